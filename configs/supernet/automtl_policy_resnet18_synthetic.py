# Supernet training for AutoMTL policy search: the ResNet-18 MTLModel trained with sandwich
# sampling of share/specialize/skip policies on synthetic scenes (a few minutes on 2 CPU cores).
#   python tools/train.py configs/supernet/automtl_policy_resnet18_synthetic.py
seed = 0
space = dict(
    type="automtl_policy",
    backbone="prototxt/resnet18.prototxt",
    input_shape=(1, 3, 64, 64),
    heads=dict(
        segment_semantic=dict(type="ConvHead", in_channels=512, num_classes=5, mid_channels=32),
        depth_zbuffer=dict(type="ConvHead", in_channels=512, num_classes=1, mid_channels=32)),
    allow_skip=True,
)
data = dict(size=64, n_train=64, n_val=32, batch_size=16, seed=0)
supernet_train = dict(steps=20, lr=1e-3, sampling="sandwich", n_random=1, checkpoint_every=5)
