"""tokenlm: neural audio codecs and discrete-token speech language models.

- ``tokenlm.codecs``: audio <-> multi-codebook tokens (the project's streaming RVQ codec, EnCodec)
- ``tokenlm.audio``: reading, writing, resampling audio
- ``tokenlm.kernels``: Triton kernels with PyTorch references
- ``tokenlm.errors``: the exceptions raised for bad input (all subclass ``TokenLMError``)
"""

from .errors import AudioError, CheckpointError, CodecError, TokenFileError, TokenLMError

__version__ = "0.1.0"

__all__ = ["AudioError", "CheckpointError", "CodecError", "TokenFileError", "TokenLMError", "__version__"]
