import torch

from bench.shapes.reward_train import RewardTrainConfig, mismatched_prompts, training_pairs


def test_mismatched_prompts_never_pair_an_image_with_its_own_prompt():
    prompts = ["a red circle", "four squares", "a red circle", "a yellow triangle"] * 5
    paired = mismatched_prompts(prompts, seed=3)
    assert len(paired) == len(prompts)
    assert all(p != q for p, q in zip(prompts, paired, strict=True))
    assert set(paired) <= set(prompts)


def test_training_pairs_label_renders_and_swaps_with_the_oracle():
    cfg = RewardTrainConfig(renders=40, mismatched=1, label_noise=0.0, label_flip=0.0)
    samples = torch.rand(4, 3, 32, 32)  # stand-ins for the model's samples, with their own labels
    labels = torch.tensor([0.1, 0.2, 0.3, 0.4])
    images, prompts, out = training_pairs(samples, ["a red circle"] * 4, labels, cfg)
    assert len(images) == len(prompts) == len(out) == 4 + 40 + (4 + 40)
    assert torch.equal(images[:4], samples) and torch.equal(out[:4], labels)
    rendered = out[4:44]
    assert (rendered == 1.0).float().mean() >= 0.95  # clean renders of their own captions satisfy them
    swapped = out[44:]
    assert swapped.mean() < 0.6  # another caption: mostly unsatisfied
    assert all(p != "a red circle" for p in prompts[44:48])
    assert torch.equal(images[48:], images[4:44])  # each render is paired again with another caption
