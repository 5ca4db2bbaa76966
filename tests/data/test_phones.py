"""Phone labels at frame rate: the phone under each frame's centre, crops, padding, unknown phones."""

import numpy as np
import pytest
import soundfile as sf
import torch

from tokenlm.data.loader import CropDataset
from tokenlm.data.phones import IGNORE, check_inventory, frame_labels, label_tensor, phone_inventory
from tokenlm.errors import TokenLMError

PHONES = [{"phone": "pau", "start": 0.0, "end": 0.1}, {"phone": "h", "start": 0.1, "end": 0.2},
          {"phone": "ax", "start": 0.2, "end": 0.35}, {"phone": "l", "start": 0.35, "end": 0.4}]


def test_frame_labels_with_an_offset():
    # 25 Hz frames: centres 0.02, 0.06, ... ; an offset moves the crop along the utterance
    assert frame_labels(PHONES, 4, 25.0, "flite", offset=0.1) == ["flite:h", "flite:h", "flite:ax", "flite:ax"]
    assert frame_labels(PHONES, 3, 25.0, "flite", offset=0.32) == ["flite:ax", "flite:l", None]


def test_inventory_and_label_tensor():
    entries = [{"engine": "flite", "phones": PHONES}, {"engine": "espeak-ng", "phones": [
        {"phone": "_:", "start": 0, "end": 0.1}, {"phone": "@", "start": 0.1, "end": 0.3}]}, {"engine": "user"}]
    names = phone_inventory(entries)
    assert names == ["espeak-ng:@", "flite:ax", "flite:h", "flite:l"]  # pauses are not classes
    classes = {n: i for i, n in enumerate(names)}
    labels = label_tensor(entries[0], classes, 10, 25.0)
    assert labels.tolist() == [IGNORE, IGNORE, 2, 2, 2, 1, 1, 1, 1, 3]  # centres 0.02, 0.06, 0.10, ...
    # no timings, or a phone outside the inventory: no label
    assert (label_tensor(entries[2], classes, 5, 25.0) == IGNORE).all()
    other = {"engine": "flite", "phones": [{"phone": "zh", "start": 0, "end": 1}]}
    assert (label_tensor(other, classes, 5, 25.0) == IGNORE).all()
    with pytest.raises(TokenLMError, match="--phones"):
        check_inventory(phone_inventory([{"engine": "user"}]))


def test_crop_dataset_labels_follow_the_crop_and_ignore_padding(tmp_path):
    sr, hop = 16000, 640
    n = int(0.4 * sr)
    sf.write(tmp_path / "a.wav", np.zeros(n, np.float32), sr, subtype="PCM_16")
    entry = {"audio": str(tmp_path / "a.wav"), "engine": "flite", "phones": PHONES}
    classes = {"flite:ax": 0, "flite:h": 1, "flite:l": 2}
    ds = CropDataset([entry], sr, 8 * hop, phone_classes=classes, hop_length=hop)  # 0.32 s crops of 0.4 s
    whole = label_tensor(entry, classes, 10, 25.0)
    for seed in range(5):
        start = int(np.random.default_rng(seed).integers(0, n - 8 * hop + 1))
        item = ds[(0, seed)]
        assert item["phones"].shape == (8,)
        assert item["phones"].tolist() == label_tensor(entry, classes, 8, 25.0, start / sr).tolist()
    padded = CropDataset([entry], sr, 12 * hop, phone_classes=classes, hop_length=hop)[(0, -1)]
    assert padded["phones"][:10].tolist() == whole.tolist() and (padded["phones"][10:] == IGNORE).all()
    assert "phones" not in CropDataset([entry], sr, 8 * hop)[(0, -1)]
    with pytest.raises(ValueError, match="hop_length"):
        CropDataset([entry], sr, 8 * hop, phone_classes=classes)
    assert torch.is_tensor(padded["phones"])
