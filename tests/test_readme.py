"""The README's Python examples run as written (paths of `make demo` replaced by this session's run)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    text = README.read_text()
    start = text.index("## Using a trained model")
    section = text[start:text.index("\n## ", start + 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_python_examples_of_the_readme_run(trained_run, corpus, tmp_path, capsys, monkeypatch):
    blocks = _python_blocks()
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)  # the examples write under demo/runs/
    for block in blocks:
        code = (block.replace("demo/runs/finetune/checkpoints/best.ckpt", str(trained_run / "checkpoints" / "best.ckpt"))
                .replace("demo/corpus", str(corpus)))
        exec(compile(code, str(README), "exec"), {})  # noqa: S102 - the README is ours; running it is the test
    out = capsys.readouterr().out
    assert out.count("Ses01") >= 5  # five classified files were printed
    assert (tmp_path / "demo" / "runs" / "python_test" / "test_metrics.json").is_file()
    assert (tmp_path / "demo" / "runs" / "python_test" / "predictions.csv").read_bytes() == (
        trained_run / "predictions.csv").read_bytes()
