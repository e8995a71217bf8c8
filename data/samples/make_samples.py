"""Regenerate this folder's sample photos and their captions (pairs.csv):

    .venv/bin/python data/samples/make_samples.py

Drawn by the demo's generator (indexer.synthetic) from a fixed seed, so the same Pillow writes
the same files. JPEG at 192 px keeps the set about 200 KB, small enough to ship in git.
"""

from pathlib import Path

from indexer.synthetic import generate, write_pairs

HERE = Path(__file__).resolve().parent
COUNT, SEED, SIZE = 30, 0, 192


def main(out: Path = HERE) -> None:
    samples = generate(out, COUNT, seed=SEED, size=SIZE, fmt="jpeg")
    write_pairs(samples, out / "pairs.csv")
    print(f"wrote {len(samples)} images and pairs.csv to {out}")


if __name__ == "__main__":
    main()
