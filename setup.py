"""automtl: automated multi-task learning and neural architecture search on PyTorch."""
from setuptools import find_packages, setup

CORE = [
    "torch==2.14.1",
    "torchvision==0.29.1",
    "numpy>=1.26,<3",
    "protobuf>=4.25,<8",
    "optuna==5.0.0",
    "tqdm>=4.66,<5",
    "tensorboard>=2.16,<3",
    "matplotlib>=3.8,<4",
    "PyYAML>=6.0,<7",
    "pillow>=10,<14",
    "mmengine==0.10.7",
    "pydantic>=2.6,<3",
    "setuptools>=77.0.3,<82",
]
EXTRAS = {
    # timm: the reference ViT that benchmarks/bench_vit_mvt.py compares against (optional)
    "bench": ["timm>=1.0,<2"],
    # dev: the test suite and the lint/type checks `make test` runs first (pinned: same findings
    # everywhere), and onnx / onnxscript / onnxruntime for the checked ONNX export
    "dev": ["pytest>=8,<10", "pytest-timeout>=2.3,<3", "hypothesis>=6.100,<7", "ruff==0.17.6",
            "mypy==1.20.2", "onnx>=1.17,<2", "onnxscript>=0.5,<1", "onnxruntime>=1.20,<2"],
    # mm: the OpenMMLab pipelines (automtl.mm). mmcv 2.1.0 has no registry wheel for torch 2.14:
    # `make install-mm` takes a prebuilt one or builds it (tools/build_mmcv.sh); see README.
    "mm": [
        "mmcv==2.1.0",
        "mmpretrain==1.2.0",
        "mmdet==3.3.0",
        "mmsegmentation==1.2.2",
        "ftfy>=6.1,<7",
        "regex>=2023.0",
        "pycocotools>=2.0.7,<3",
    ],
}

setup(
    name="automtl",
    version="0.1.0",
    description="Automated multi-task learning and multi-task NAS on PyTorch",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["automtl", "automtl.*", "search_spaces", "search_spaces.*"]),
    include_package_data=True,
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["automtl=automtl.__main__:main"]},
)
