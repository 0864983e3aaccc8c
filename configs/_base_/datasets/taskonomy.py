# Tiny Taskonomy (5 tasks) in AdaShare/AutoMTL's layout: DATA_ROOT/taskonomy.json, DATA_ROOT/train/, DATA_ROOT/test/.
# Set the root with --cfg-options data.data_root=DIR.
tasks = ["segment_semantic", "normal", "depth_zbuffer", "keypoints2d", "edge_texture"]  # AutoMTL's Taskonomy
# tasks (segmentation: 17 classes)
data = dict(
    type="Taskonomy",
    data_root="data/Taskonomy",
    batch_size=16,  # AutoMTL's Taskonomy notebook
    size=256,  # AutoMTL's Taskonomy loader resizes every sample to 256x256 first
    crop=224,  # AutoMTL's Taskonomy notebook: crop_h = crop_w = 224
    scale=(0.5, 1.5),  # AutoMTL's Taskonomy loader: random rescale by 0.5-1.5 before the crop (then mirror)
    val_size=224,  # AutoMTL's Taskonomy loader resizes evaluation images to the crop size
    # evaluation split: "test_small" by default where the index has it (AutoMTL's Taskonomy notebook), else "test"
)
