# A seconds-long run of every phase (tests and quick checks).
tasks = ["segment_semantic", "depth_zbuffer"]
data = dict(type="synthetic", size=16, n_train=16, n_val=8, batch_size=4)
model = dict(backbone=dict(type="TinyResNet", widths=(8, 16)), head=dict(type="ConvHead", mid_channels=8),
             input_shape=(1, 3, 16, 16))
trainer = dict(checkpoint_iters=2, print_iters=2, progress=False)
pre_train = dict(iters=4, lr=1e-3)
alter_train_with_reg = dict(iters=4, policy_network_iters=(1, 1), network_lr=1e-3)
sample = dict(n=4, budget=1.0, score=True)
post_train = dict(iters=4, lr=1e-3)
