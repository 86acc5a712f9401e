"""nachos-tf: joint backbone + early-exit NAS for microcontrollers, on Keras 3 / TensorFlow Lite Micro."""
from setuptools import find_packages, setup

setup(
    name="nachos-tf",
    version="0.1.0",
    description="Hardware-constrained neural architecture search for early-exit networks on microcontrollers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["nachos_tf", "nachos_tf.*", "tflite_export", "tflite_export.*"]),
    py_modules=["nachos_tf_main"],   # the console entry point: catches Ctrl-C during the TensorFlow import
    package_data={"tflite_export": ["templates/*"], "nachos_tf": ["runtime_footprint.json", "supernet/presets/*/*.json", "supernet/presets/*/*.h5"]},
    install_requires=[
        "tensorflow-cpu>=2.21,<2.22",
        "keras>=3.15,<3.16",
        "tf-keras>=2.21,<2.22",
        "tensorflow-model-optimization>=0.8.1,<0.9",
        "keras-tuner>=1.4.8,<1.5",
        "pymoo>=0.6.2,<0.7",
        "click>=8.1",
        "tflite-micro",
        "numpy>=2.0",
        "matplotlib>=3.8",
        "pillow>=10",
        "dask>=2024.1",
        "distributed>=2024.1",
    ],
    extras_require={"test": ["pytest>=8", "pytest-xdist>=3.5"]},
    entry_points={"console_scripts": ["nachos-tf=nachos_tf_main:main"]},
)
