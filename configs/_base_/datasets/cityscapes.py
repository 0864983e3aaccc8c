# CityScapes (2 tasks) in AdaShare/AutoMTL's layout: DATA_ROOT/cityscape.json plus the .npy files it lists.
# Set the root with --cfg-options data.data_root=DIR.
tasks = ["segment_semantic", "depth_zbuffer"]  # AutoMTL's CityScapes tasks (segmentation: 19 classes)
data = dict(
    type="CityScapes",
    data_root="data/Cityscapes",
    batch_size=16,  # AutoMTL's CityScapes notebook
    crop=224,  # AutoMTL's CityScapes notebook: crop_h = crop_w = 224
    scale=(0.5, 1.5),  # AutoMTL's CityScapes loader: random rescale by 0.5-1.5 before the crop (then mirror)
    # evaluation split: "test" by default (AutoMTL's CityScapes notebook evaluates on it, at the stored size)
)
