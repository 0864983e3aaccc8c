# AutoMTL policy space: one share/specialize/skip gene per ResNet-18 layer x task, two dense
# tasks on 64x64 synthetic scenes. Shared by the supernet-training and search configs.
space = dict(
    type="automtl_policy",
    backbone="prototxt/resnet18.prototxt",
    input_shape=(1, 3, 64, 64),
    heads=dict(
        segment_semantic=dict(type="ConvHead", in_channels=512, num_classes=5, mid_channels=32),
        depth_zbuffer=dict(type="ConvHead", in_channels=512, num_classes=1, mid_channels=32)),
    allow_skip=True,
    checkpoint=None,
)
