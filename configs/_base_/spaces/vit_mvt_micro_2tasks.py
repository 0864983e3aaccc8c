# A micro ViT-MVT space (depth 2-3, width 32-48) for two dense tasks on 64x64 synthetic scenes:
# small enough for CPU smoke runs. Shared by the supernet-training and search configs.
space = dict(type="vit_mvt", preset=None, name="micro", tasks=("segment_semantic", "depth_zbuffer"),
             num_outputs=dict(segment_semantic=5, depth_zbuffer=1),
             depths=(2, 3), embeds=(32, 48), heads=(1, 2), mlp_ratios=(2.0, 3.0), img_size=64)
