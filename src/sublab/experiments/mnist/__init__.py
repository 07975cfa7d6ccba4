"""The paper's MNIST auxiliary-logit experiment: batched MLPs, datasets, the experiment itself."""

from sublab.experiments.mnist.data import ImageData, load_image_data, parse_idx, read_idx
from sublab.experiments.mnist.models import MLPStack, model_seed
from sublab.experiments.mnist.run import RESULT_KEYS, MnistSettings, run_mnist

__all__ = ["RESULT_KEYS", "ImageData", "MLPStack", "MnistSettings", "load_image_data", "model_seed", "parse_idx",
           "read_idx", "run_mnist"]
