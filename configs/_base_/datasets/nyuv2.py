# NYUv2 (3 tasks) in AdaShare/AutoMTL's layout: DATA_ROOT/nyu_v2_3task.json plus the files it lists
# (AutoMTL keeps the json under data/utils/; copy it into the data root).
# Set the root with --cfg-options data.data_root=DIR.
tasks = ["segment_semantic", "normal", "depth_zbuffer"]  # AutoMTL's NYUv2 tasks (segmentation: 40 classes)
data = dict(
    type="NYUv2",
    data_root="data/NYUv2",
    batch_size=16,  # AutoMTL's NYUv2 notebook: 16 for the train1/train2 loaders (its pre-train loader used 8)
    crop=321,  # AutoMTL's NYUv2 notebook: crop_h = crop_w = 321
    scale=(0.5, 1.5),  # AutoMTL's NYU_v2 loader: random rescale by 0.5-1.5 before the crop (then mirror)
    val_size=321,  # AutoMTL's NYU_v2 loader resizes test images to the crop size
    # evaluation split: "test" by default (AutoMTL's index has train / train1 / train2 / test)
)
