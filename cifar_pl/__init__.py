"""cifar_pl: CIFAR experiments and transfer learning with PyTorch Lightning, from one YAML file."""

__version__ = "0.1.0"
