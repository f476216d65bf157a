"""Models: the default small CNN, the certified-training CNN, the certified-robustness paper's deep CNN, VGG16-BN, ResNet18.

Every API of the plugin also accepts any classifier ``nn.Module`` (e.g. from torchvision).
"""
from harp_plugin.models.certified_cnn import certified_cnn
from harp_plugin.models.cifar_deep import cifar_model_deep
from harp_plugin.models.device import DeviceError, model_device
from harp_plugin.models.normalization import InputNormalization
from harp_plugin.models.resnet import BasicBlock, resnet18
from harp_plugin.models.small_cnn import small_cnn
from harp_plugin.models.validation import check_classifier_output, final_classifier
from harp_plugin.models.vgg import vgg16_bn

__all__ = [
    "BasicBlock",
    "DeviceError",
    "InputNormalization",
    "certified_cnn",
    "check_classifier_output",
    "cifar_model_deep",
    "final_classifier",
    "model_device",
    "resnet18",
    "small_cnn",
    "vgg16_bn",
]
