"""samkit: Segment Anything 2 end to end in plain PyTorch."""

from samkit import errors
from samkit.automask.generator import AutoMaskGenerator
from samkit.builder import build_model
from samkit.checkpoint import save_checkpoint
from samkit.configs import ModelConfig, list_models
from samkit.image_predictor import ImagePredictor
from samkit.session import ImageSession
from samkit.video.predictor import VideoPredictor
from samkit.video.streaming import StreamingTracker
from samkit.weights import download_checkpoint

__all__ = ["build_model", "list_models", "save_checkpoint", "ModelConfig", "ImagePredictor", "ImageSession",
           "AutoMaskGenerator", "VideoPredictor", "StreamingTracker", "errors", "download_checkpoint"]
__version__ = "0.1.0"
