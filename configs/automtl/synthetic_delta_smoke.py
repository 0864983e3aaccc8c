# A seconds-long run of the three delta-sharing steps (tests and quick checks).
_base_ = ["./synthetic_delta_tinyresnet.py"]
tasks = ["segment_semantic", "depth_zbuffer"]
data = dict(type="synthetic", size=16, n_train=16, n_val=8, batch_size=4)
model = dict(backbone=dict(type="TinyResNet", widths=(8, 16)), head=dict(type="ConvHead", mid_channels=8),
             input_shape=(1, 3, 16, 16))
trainer = dict(checkpoint_iters=2, print_iters=2, progress=False, tensorboard=False)
delta = dict(base="segment_semantic", density=0.2)
delta_train = dict(iters=4)
delta_support_train = dict(iters=3)
delta_act_train = dict(iters=3)
