"""An out-of-tree world package, found through its entry point, trains, evaluates and tabulates with no edit to
the core: its own tiny random Stable Diffusion, a weight-free reward, its settings files and a prompt set."""

import shutil
import textwrap
from pathlib import Path

from cli_helpers import bench_subprocess

WORLD = textwrap.dedent(
    '''
    """A toy world: a tiny random SD shipped in the package, brightness as the reward, one prompt set."""
    from pathlib import Path

    import torch

    from bench.scoring import Scorer
    from bench.world import World

    HERE = Path(__file__).resolve().parent


    class Brightness(Scorer):
        """Mean pixel value of an image, in [0, 1]: a reward without weights."""

        name = "toy-brightness"

        def score(self, images, prompts, metadata=None):
            return images.float().mean(dim=(1, 2, 3))


    class ToyWorld(World):
        name = "toy"
        summary = "a toy world for the plugin test"
        scorers = {"toy-brightness": "toy_world:Brightness"}
        prompt_dirs = (HERE / "prompts",)
        settings_dir = HERE / "settings"

        def model_path(self, model):
            return str(HERE / "model") if model in ("", "toy") else None
    '''
)
SETTINGS = {
    "world.yaml": "model: toy  # the package's own tiny SD\nreward: toy-brightness  # weight-free\n"
    "prompts: toy-set  # the package's prompt set\nsampling: {num_steps: 3}  # a tiny sampler\n",
    "dpok.yaml": "hparams:\n  samples_per_round: 2  # tiny\n  batch_size: 2  # tiny\n  grad_accum: 1  # tiny\n"
    "  updates_per_round: 1  # tiny\n  value_batch_size: 4  # tiny\n",
}


def _install(site: Path, tiny_sd: Path) -> None:
    pkg = site / "toy_world"
    (pkg / "settings").mkdir(parents=True)
    (pkg / "prompts").mkdir()
    (pkg / "__init__.py").write_text(WORLD)
    for name, text in SETTINGS.items():
        (pkg / "settings" / name).write_text(text)
    (pkg / "prompts" / "toy-set-v1.txt").write_text("# two prompts\na red circle\na blue square\n")
    shutil.copytree(tiny_sd, pkg / "model")
    dist = site / "toy_world-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-world\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[bench.worlds]\ntoy = toy_world:ToyWorld\n")


def test_an_out_of_tree_world_runs_evaluates_and_tabulates(tmp_path, tiny_sd):
    site = tmp_path / "site"
    _install(site, tiny_sd)
    listed = bench_subprocess(["ls", "worlds"], site, tmp_path)
    assert listed.returncode == 0 and "entry-point/toy-world" in listed.stdout, listed.stderr
    scorers = bench_subprocess(["ls", "scorers"], site, tmp_path)
    assert "toy-brightness" in scorers.stdout and "world/toy" in scorers.stdout

    ran = bench_subprocess(["run", "--world", "toy", "--method", "dpok", "--steps", "2"], site, tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "world toy, method dpok" in ran.stderr and "settings/world.yaml" in ran.stderr
    run_dir = Path(tmp_path, ran.stdout.strip().splitlines()[-1].removeprefix("run folder: "))
    config = (run_dir / "config.yaml").read_text()
    assert "world: toy" in config and "reward: toy-brightness" in config and "samples_per_round: 2" in config

    evaluated = bench_subprocess(["eval", str(run_dir), "--samples", "2"], site, tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "toy-brightness" in evaluated.stdout
    table = bench_subprocess(["table", str(run_dir)], site, tmp_path)
    assert table.returncode == 0, table.stderr[-3000:]
    assert "toy-brightness" in table.stdout and "pretrained" in table.stdout
