"""``byzerllm.utils.nontext`` of Byzer-LLM: images, audio and ``<_tag_>`` extraction.

The classes live in ``byzerllm.multimodal``; this module keeps Byzer-LLM's import path.
"""

from ..multimodal import Audio, AudioData, Image, ImageData, Tag, TagExtractor, tagged_parts

__all__ = ["Audio", "AudioData", "Image", "ImageData", "Tag", "TagExtractor", "tagged_parts"]
