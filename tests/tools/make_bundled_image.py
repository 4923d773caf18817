"""Draw the bundled site's pictures with Pillow (a dev tool: `pip install Pillow`, run
once, commit the output; feedsvc never imports Pillow).

- data/media/2015/rouhani-erdogan-phone-call.jpg: a dusk view over water between two
  shores (the Bosphorus-like strait of the article's Iran-Turkey talks), 960x540 JPEG;
- feedsvc/templates/favicon.ico: the default /favicon.ico, a feed icon (16, 32, 48 px).

Deterministic: the same Pillow gives the same bytes.
Usage: python tests/tools/make_bundled_image.py
"""
from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[2]
W, H = 960, 540


def mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=True))  # type: ignore


def picture() -> Image.Image:
    rng = random.Random(2015)
    img = Image.new("RGB", (W, H))
    draw = ImageDraw.Draw(img)
    horizon = int(H * 0.58)
    for y in range(horizon):                         # dusk sky, deep blue to orange
        t = y / horizon
        draw.line([(0, y), (W, y)], fill=mix((28, 44, 96), (244, 164, 96), t ** 1.6))
    draw.ellipse([W * 0.62, horizon - 95, W * 0.62 + 110, horizon + 15], fill=(255, 214, 150))
    for y in range(horizon, H):                      # water, darker towards the viewer
        t = (y - horizon) / (H - horizon)
        draw.line([(0, y), (W, y)], fill=mix((196, 128, 92), (20, 40, 70), t ** 0.7))
    for _ in range(260):                             # glints on the water
        y = rng.randint(horizon + 2, H - 1)
        x = rng.gauss(W * 0.62 + 55, 40 + (y - horizon) * 0.6)
        length = rng.randint(6, 30)
        draw.line([(x, y), (x + length, y)], fill=(255, 200, 140), width=1)
    # two shores: hills with a city of small lit buildings
    for side, (x0, x1) in enumerate(((-40, W * 0.42), (W * 0.55, W + 40))):
        points = [(x0, horizon)]
        steps = 14
        for i in range(steps + 1):
            x = x0 + (x1 - x0) * i / steps
            points.append((x, horizon - 40 - 50 * abs((i / steps) - (0.3 + 0.4 * side))
                           - rng.randint(0, 18)))
        points.append((x1, horizon))
        draw.polygon(points, fill=(38, 34, 52))
        for _ in range(90):
            bx = rng.uniform(x0 + 20, x1 - 20)
            bw, bh = rng.randint(6, 16), rng.randint(8, 40)
            draw.rectangle([bx, horizon - bh, bx + bw, horizon], fill=(52, 46, 66))
            if rng.random() < 0.6:
                wy = horizon - rng.randint(3, max(4, bh - 3))
                draw.rectangle([bx + 2, wy, bx + 4, wy + 2], fill=(255, 220, 140))
    # a bridge over the strait
    deck = horizon - 58
    draw.line([(W * 0.30, deck), (W * 0.70, deck)], fill=(24, 22, 34), width=5)
    for tx in (W * 0.40, W * 0.60):
        draw.line([(tx, deck - 70), (tx, horizon)], fill=(24, 22, 34), width=6)
        for k in range(1, 9):
            draw.line([(tx, deck - 68), (tx + (W * 0.1) * k / 9, deck)], fill=(40, 36, 52))
            draw.line([(tx, deck - 68), (tx - (W * 0.1) * k / 9, deck)], fill=(40, 36, 52))
    # a little grain, as a camera gives (and JPEG bytes gzip cannot shrink much)
    grain = Image.frombytes("L", (W, H), bytes(rng.randrange(256) for _ in range(W * H)))
    noise = Image.merge("RGB", (grain, grain, grain))
    return Image.blend(img.filter(ImageFilter.SMOOTH), noise, 0.06)


def favicon() -> Image.Image:
    """The feed icon: an orange square, a dot and two arcs."""
    size = 48
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.rounded_rectangle([0, 0, size - 1, size - 1], radius=9, fill=(238, 128, 44))
    draw.ellipse([8, 32, 16, 40], fill="white")
    for r in (18, 30):
        draw.arc([10 - r, 38 - r, 10 + r, 38 + r], 270, 360, fill="white", width=6)
    return img


if __name__ == "__main__":
    out = ROOT / "data" / "media" / "2015" / "rouhani-erdogan-phone-call.jpg"
    picture().save(out, "JPEG", quality=82, optimize=True)
    ico = ROOT / "feedsvc" / "templates" / "favicon.ico"
    favicon().save(ico, sizes=[(16, 16), (32, 32), (48, 48)])
    for path in (out, ico):
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size} bytes")
