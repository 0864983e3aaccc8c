# PASCAL-Context (5 tasks) in ATRC/InvPT's PASCAL_MT layout: DATA_ROOT/ImageSets/Context/{train,val}.txt and
# per-task folders. Not an AutoMTL setting: a data section to build experiment configs on.
# Set the root with --cfg-options data.data_root=DIR.
tasks = ["segment_semantic", "human_parts", "saliency", "normal", "edge_texture"]  # segmentation: 21 classes,
# human parts: 7
data = dict(
    type="PascalContext",
    data_root="data/PASCAL_MT",
    batch_size=8,
    size=512,  # PASCAL images differ in size: resized so batches stack (ATRC/InvPT work at 512x512)
    val_split="val",
)
