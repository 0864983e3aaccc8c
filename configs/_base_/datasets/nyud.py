# NYUD-v2 (4 tasks) in ATRC/InvPT's NYUD_MT layout: DATA_ROOT/gt_sets/{train,val}.txt and per-task folders.
# Not an AutoMTL setting: a data section to build experiment configs on.
# Set the root with --cfg-options data.data_root=DIR.
tasks = ["segment_semantic", "depth_zbuffer", "normal", "edge_texture"]  # segmentation: 40 classes
data = dict(type="NYUD", data_root="data/NYUD_MT", batch_size=8, val_split="val")
