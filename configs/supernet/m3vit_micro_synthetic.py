# M3ViT on synthetic scenes: a micro ViT whose every other block (1, 3) has a task-routed
# mixture of experts instead of its MLP (4 experts, top-2, one gate per task, balance loss
# weight 0.01 added to each task's loss), three dense tasks. About 20 s on 2 CPU cores:
#   python tools/train.py configs/supernet/m3vit_micro_synthetic.py
# The experts serve every task; the sharing genes of the attention and MLP linears are sampled
# like any ViT-MVT space (sandwich sampling), so a search can then pick them.
seed = 0
space = dict(type="vit_mvt", preset=None, name="m3vit_micro",
             tasks=("segment_semantic", "depth_zbuffer", "normal"),
             num_outputs=dict(segment_semantic=5, depth_zbuffer=1, normal=3),
             depths=(4,), embeds=(48,), heads=(1,), mlp_ratios=(2.0,), img_size=64,
             ffn_layout=("dense", "moe", "dense", "moe"), num_experts=(4,), top_ks=(2,),
             moe_mlp_ratio=1.0, moe=dict(router="multi_gate", aux_weight=0.01))
data = dict(size=64, n_train=48, n_val=16, batch_size=16, seed=0)
supernet_train = dict(steps=12, lr=2e-3, sampling="sandwich", n_random=1, checkpoint_every=6)
