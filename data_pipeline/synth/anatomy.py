"""Per-video random anatomy and the tissue layer of the microscope view.

:func:`sample_anatomy` draws one patient's eye (position, size, iris and fundus
colours, vessels, lid opening, drape) and the surgeon's port positions.
:class:`TissuePainter` turns a tissue state (the ``initial``/``targets`` keys of
``taxonomy``: wound, rhexis, nucleus, IOL, scleral flap, fundus haze, laser spots,
...) into an RGB image of the whole scene without instruments. It paints on a canvas
larger than the frame by a margin, so camera jitter is a crop; the static layers are
painted once per video and each state is painted on a copy of them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

logger = logging.getLogger(__name__)

IRIS_COLORS = ((92, 58, 32), (120, 80, 40), (70, 95, 120), (90, 110, 70), (140, 110, 70), (60, 45, 35))
DRAPE_COLORS = ((40, 90, 120), (50, 110, 90), (70, 80, 130), (35, 70, 95))
HUB_COLORS = ((60, 110, 230), (240, 140, 40), (150, 70, 200))  # 23 / 25 / 27 gauge trocar hubs


@dataclass
class Anatomy:
    """One patient's eye and one surgeon's set-up, in canvas pixels (canvas = frame + 2 * margin)."""

    canvas_h: int
    canvas_w: int
    margin: int
    cx: float
    cy: float
    R: float  # limbus radius
    pupil: float  # dilated pupil radius, as a fraction of R
    iris_color: np.ndarray
    sclera_color: np.ndarray
    skin_color: np.ndarray
    drape_color: np.ndarray
    reflex_color: np.ndarray  # red reflex through the pupil
    cataract_color: np.ndarray
    fundus_color: np.ndarray
    hub_color: tuple[int, int, int]
    lid_a: float  # lid-opening ellipse half-axes, in units of R
    lid_b: float
    main_angle: float  # main incision (radians, image coordinates: 0 = right, pi/2 = down)
    side_angle: float
    free_angles: dict  # pivot direction of tools that come from outside the ports
    port_angles: tuple[float, float, float]  # vitrectomy trocars
    disc_angle: float  # optic disc direction from the fundus centre
    rhexis_start: float
    groove_angle: float
    white_balance: np.ndarray
    seed: int


def sample_anatomy(rng: np.random.Generator, view: str, height: int, width: int, margin: int) -> Anatomy:
    H, W = height + 2 * margin, width + 2 * margin
    if view == "superior":
        # The surgical site at 12 o'clock sits in the upper middle of the frame.
        R = height * rng.uniform(0.40, 0.48)
        cx = W / 2 + width * rng.uniform(-0.08, 0.08)
        cy = H / 2 + height * rng.uniform(0.22, 0.30)
    else:
        R = height * rng.uniform(0.27, 0.36)
        cx = W / 2 + width * rng.uniform(-0.10, 0.10)
        cy = H / 2 + height * rng.uniform(-0.08, 0.08)
    right_eye = rng.random() < 0.5
    # A temporal clear-corneal incision: on the image's left or right depending on the eye.
    main = (math.pi if right_eye else 0.0) + rng.uniform(-0.5, 0.5)
    side = main + (1 if rng.random() < 0.5 else -1) * rng.uniform(1.2, 1.8)
    if view == "superior":  # the paracentesis is made near the site, in the upper half
        side = -math.pi / 2 + (1 if rng.random() < 0.5 else -1) * rng.uniform(0.6, 1.0)
    tint = rng.uniform(-12, 12, size=3)
    return Anatomy(
        canvas_h=H, canvas_w=W, margin=margin, cx=cx, cy=cy, R=R,
        pupil=rng.uniform(0.52, 0.66) if view != "superior" else rng.uniform(0.25, 0.35),
        iris_color=np.array(IRIS_COLORS[rng.integers(len(IRIS_COLORS))], np.float32) + tint,
        sclera_color=np.array([236, 222, 212], np.float32) + rng.uniform(-15, 8, size=3),
        skin_color=np.array([205, 150, 125], np.float32) + rng.uniform(-30, 20, size=3),
        drape_color=np.array(DRAPE_COLORS[rng.integers(len(DRAPE_COLORS))], np.float32) + tint,
        reflex_color=np.array([215, 95, 45], np.float32) + rng.uniform(-25, 25, size=3),
        cataract_color=np.array([205, 185, 120], np.float32) + rng.uniform(-25, 25, size=3),
        fundus_color=np.array([200, 90, 45], np.float32) + rng.uniform(-30, 25, size=3),
        hub_color=HUB_COLORS[rng.integers(len(HUB_COLORS))],
        lid_a=rng.uniform(1.7, 2.1), lid_b=rng.uniform(1.25, 1.5),
        main_angle=main, side_angle=side,
        free_angles={"free": rng.uniform(-2.6, -0.5), "site": -math.pi / 2 + rng.uniform(-0.6, 0.6)},
        port_angles=(main + 0.9, main - 0.9, main + math.pi + rng.uniform(-0.3, 0.3)),
        disc_angle=(0.0 if right_eye else math.pi) + rng.uniform(-0.3, 0.3),
        rhexis_start=rng.uniform(0, 2 * math.pi),
        groove_angle=rng.uniform(0, math.pi / 2),
        white_balance=np.clip(1 + rng.normal(0, 0.05, size=3), 0.85, 1.15).astype(np.float32),
        seed=int(rng.integers(2**31)),
    )


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a small random grid upsampled bilinearly."""
    small = rng.uniform(0, 255, size=(cells, cells)).astype(np.uint8)
    big = np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR), np.float32)
    return big / 127.5 - 1.0


def _blend(img: np.ndarray, mask: np.ndarray, color, alpha: float | np.ndarray = 1.0) -> None:
    """In place: img = img * (1 - a) + color * a with a = mask * alpha (mask in [0, 1])."""
    a = (mask * alpha)[..., None] if np.ndim(mask) == 2 else mask * alpha
    img += (np.asarray(color, np.float32) - img) * a


def _ring(r: np.ndarray, radius: float, half_width: float) -> np.ndarray:
    return np.clip(1.0 - np.abs(r - radius) / half_width, 0.0, 1.0)


def _disc(r: np.ndarray, radius: float, soft: float = 1.0) -> np.ndarray:
    return np.clip((radius - r) / soft + 0.5, 0.0, 1.0)


def _angle_diff(theta: np.ndarray, angle: float) -> np.ndarray:
    return np.abs((theta - angle + np.pi) % (2 * np.pi) - np.pi)


class TissuePainter:
    """Paints the scene (no instruments) for a tissue state; results are cached per quantised state."""

    LEVELS = 10  # state values are quantised to 1/10: smooth enough at 8 fps, and bounds the cache

    def __init__(self, anatomy: Anatomy, view: str):
        self.a = a = anatomy
        self.view = view
        rng = np.random.default_rng(a.seed)
        H, W = a.canvas_h, a.canvas_w
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        self.dx, self.dy = xx - a.cx, yy - a.cy
        self.r = np.hypot(self.dx, self.dy)
        self.theta = np.arctan2(self.dy, self.dx)
        self.rp = a.pupil * a.R
        self.noise = _smooth_noise(rng, H, W, 10)
        self.fine = _smooth_noise(rng, H, W, 40)
        self.anterior = self._paint_anterior(rng)
        self.fundus = self._paint_fundus(rng) if view == "retina" else None
        self.blood_spots = [(a.cx + a.R * rng.uniform(-0.5, 0.5), a.cy - a.R * rng.uniform(1.05, 1.5),
                             a.R * rng.uniform(0.03, 0.07)) for _ in range(6)]
        self.laser_spots = self._laser_spots(rng)
        self._cache: dict[tuple, np.ndarray] = {}
        self._masks: dict[tuple, _Local] = {}
        self._site: tuple | None = None
        self._cataract_shade = a.cataract_color * (1 - 0.25 * (self.r / self.rp))[..., None]

    # ---- static layers -------------------------------------------------------------------------
    def _paint_anterior(self, rng: np.random.Generator) -> np.ndarray:
        a, r, theta = self.a, self.r, self.theta
        H, W = r.shape
        img = np.empty((H, W, 3), np.float32)
        img[:] = a.drape_color
        img *= (0.85 + 0.15 * self.noise)[..., None]
        ell = np.hypot(self.dx / (a.lid_a * a.R), self.dy / (a.lid_b * a.R))
        _blend(img, np.clip((1.18 - ell) / 0.04, 0, 1), a.skin_color)
        sclera = np.clip((1.0 - ell) / 0.03, 0, 1)
        _blend(img, sclera, a.sclera_color * (0.95 + 0.05 * self.fine[..., None]))
        # Conjunctival vessels: random walks from the lid margin towards the limbus.
        vessels = Image.new("L", (W, H), 0)
        draw = ImageDraw.Draw(vessels)
        for _ in range(14):
            ang = rng.uniform(0, 2 * np.pi)
            rad = rng.uniform(1.3, 1.9)
            pts = []
            for _ in range(6):
                pts.append((a.cx + a.R * rad * np.cos(ang), a.cy + a.R * rad * np.sin(ang)))
                rad -= rng.uniform(0.05, 0.15)
                ang += rng.normal(0, 0.08)
            draw.line(pts, fill=int(rng.uniform(120, 220)), width=1)
        v = np.asarray(vessels, np.float32) / 255.0 * sclera * (r > a.R * 1.04)
        _blend(img, v, (170, 40, 40), 0.6)
        # Speculum wires along the lid margins.
        spec = _ring(ell, 1.07, 0.025) * (np.abs(np.sin(theta)) > 0.75)
        _blend(img, spec, (170, 175, 185), 0.9)
        # Cornea and limbus.
        _blend(img, _ring(r, a.R, a.R * 0.05), (120, 130, 145), 0.55)
        # Iris: radial striations and a collarette.
        iris = np.clip((a.R * 0.95 - r) / 1.0, 0, 1) * np.clip((r - self.rp) / 1.0, 0, 1)
        stri = 0.5 + 0.5 * np.sin(theta * rng.integers(18, 30) + 3 * self.fine)
        shade = (0.7 + 0.3 * stri)[..., None] * (0.9 + 0.1 * (r / a.R))[..., None]
        _blend(img, iris, a.iris_color * shade)
        _blend(img, _ring(r, self.rp * 1.35, 1.0) * iris, a.iris_color * 1.3, 0.5)
        # Red reflex through the (dilated) pupil; lens opacity is painted over it per state.
        reflex = a.reflex_color * (1 - 0.4 * (r / self.rp) ** 2)[..., None]
        _blend(img, _disc(r, self.rp), reflex)
        # Microscope vignetting, fixed to the scene (cheap, and close enough under small jitter).
        vign = 1.0 - 0.35 * np.clip(np.hypot(self.dx, self.dy) / (1.6 * max(H, W)), 0, 1) ** 2
        img *= vign[..., None]
        return img

    def _paint_fundus(self, rng: np.random.Generator) -> np.ndarray:
        """Wide-angle view of the posterior pole inside a dark surround."""
        a, r = self.a, self.r
        H, W = r.shape
        F = a.R * 1.2
        self.F = F
        img = np.zeros((H, W, 3), np.float32) + 12
        field = _disc(r, F, 1.5)
        base = a.fundus_color * (0.85 + 0.15 * self.fine[..., None]) * (1 - 0.35 * (r / F) ** 2)[..., None]
        _blend(img, field, base)
        # Optic disc and macula.
        self.disc_xy = (a.cx + 0.35 * F * math.cos(a.disc_angle), a.cy + 0.35 * F * math.sin(a.disc_angle))
        self.macula_xy = (a.cx - 0.1 * F * math.cos(a.disc_angle), a.cy - 0.1 * F * math.sin(a.disc_angle))
        rd = np.hypot(self.dx + a.cx - self.disc_xy[0], self.dy + a.cy - self.disc_xy[1])
        rm = np.hypot(self.dx + a.cx - self.macula_xy[0], self.dy + a.cy - self.macula_xy[1])
        self.rm = rm
        _blend(img, _disc(rd, 0.14 * F, 1.0) * field, (235, 200, 150))
        _blend(img, _disc(rd, 0.06 * F, 1.0) * field, (250, 235, 200))
        _blend(img, np.clip(1 - rm / (0.16 * F), 0, 1) * field, (110, 40, 25), 0.6)
        # Vessel arcades leaving the disc.
        vessels = Image.new("L", (W, H), 0)
        draw = ImageDraw.Draw(vessels)
        for k in range(7):
            ang = a.disc_angle + math.pi + rng.uniform(-1.5, 1.5) + (k % 2) * 0.3
            x, y = self.disc_xy
            pts = [(x, y)]
            for _ in range(8):
                x += 0.12 * F * math.cos(ang)
                y += 0.12 * F * math.sin(ang)
                ang += rng.normal(0, 0.25) + (0.12 if k % 2 else -0.12)
                pts.append((x, y))
            draw.line(pts, fill=255, width=max(1, round(F * 0.025)))
        vmask = np.asarray(vessels, np.float32) / 255.0 * field
        _blend(img, vmask, (120, 20, 20), 0.85)
        return img

    def _laser_spots(self, rng: np.random.Generator) -> list[tuple[float, float]]:
        F = self.a.R * 1.2
        spots = []
        for _ in range(36):
            ang, rad = rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 0.92) * F
            spots.append((self.a.cx + rad * math.cos(ang), self.a.cy + rad * math.sin(ang)))
        return spots

    # ---- per state -------------------------------------------------------------------------------
    def paint(self, state: dict[str, float]) -> np.ndarray:
        """The scene for ``state`` as uint8 (canvas_h, canvas_w, 3)."""
        key = tuple(sorted((k, round(v * self.LEVELS)) for k, v in state.items()))
        img = self._cache.get(key)
        if img is None:
            q = {k: v / self.LEVELS for k, v in key}
            if self.view == "retina" and q.get("fundus", 0) >= 0.5:
                f = self._paint_fundus_state(q)
            else:
                f = self._paint_anterior_state(q)
            img = np.clip(f, 0, 255).astype(np.uint8)
            self._cache[key] = img
        return img

    def _mask(self, key: tuple, build) -> _Local:
        """A mask, built once per video and key, kept only over its bounding box."""
        m = self._masks.get(key)
        if m is None:
            m = self._masks[key] = _Local.of(np.asarray(build(), np.float32))
        return m

    def _paint_anterior_state(self, s: dict[str, float]) -> np.ndarray:
        a, r, theta, rp, mask = self.a, self.r, self.theta, self.rp, self._mask
        img = self.anterior.copy()
        density = s.get("density", 0.0)
        nucleus = s.get("nucleus", 0.0)
        if density > 0 and nucleus > 0:
            rn = rp * 0.78 * math.sqrt(max(nucleus, 0.08))
            nuc = mask(("nucleus", rn), lambda: _disc(r, rn, 1.5) * _disc(r, rp))
            nuc.blend(img, self._cataract_shade, 0.35 + 0.55 * density)
            if 0.1 < nucleus < 0.9:  # divide-and-conquer grooves
                mask(("groove", rn), lambda: self._groove() * _disc(r, rn, 1.5)).blend(img, a.reflex_color * 0.8, 0.8)
        cortex = s.get("cortex", 0.0) * (0.5 + 0.5 * density if "density" in s else 0.0)
        if cortex > 0:
            mask(("cortex",), lambda: np.clip((r - rp * 0.72) / (0.1 * rp), 0, 1) * _disc(r, rp)
                 * (0.6 + 0.4 * np.sin(theta * 9 + 4 * self.fine))).blend(img, (225, 220, 200), 0.7 * cortex)
        haze = s.get("haze", 0.0) * (1 - nucleus) * (1 - s.get("cortex", 0.0)) if "nucleus" in s else 0.0
        if haze > 0:
            mask(("pupil",), lambda: _disc(r, rp)).blend(img, (190, 185, 175), 0.25 * haze)
        hydro = s.get("hydro", 0.0)
        if hydro > 0:
            mask(("hydro", hydro), lambda: _ring(r, rp * (0.25 + 0.6 * hydro), 1.2) * _disc(r, rp)) \
                .blend(img, (255, 220, 120), 0.7 * hydro)
        rhexis = s.get("rhexis", 0.0)
        if rhexis > 0:
            frac = mask(("rhexis-angle",), lambda: ((theta - a.rhexis_start) % (2 * np.pi)) / (2 * np.pi) + 1e-3)
            ring = mask(("rhexis-ring",), lambda: _ring(r, rp * 0.62, 0.9))
            mask(("rhexis", rhexis), lambda: ring.full(r.shape) * (frac.full(r.shape) <= rhexis + 1e-3)) \
                .blend(img, (245, 245, 235), 0.85)
        iol = s.get("iol", 0.0)
        if iol > 0:
            self._paint_iol(img, iol)
        ovd = s.get("ovd", 0.0)
        if ovd > 0:
            mask(("cornea",), lambda: _disc(r, a.R)).blend(img, (200, 225, 240), 0.18 * ovd)
        for key, angle, span in (("wound", a.main_angle, 0.2), ("sideport", a.side_angle, 0.1)):
            w = s.get(key, 0.0)
            if w > 0:
                mask((key, w), lambda angle=angle, span=span, w=w: _ring(r, a.R * 0.98, 1.2)
                     * (_angle_diff(theta, angle) < span * w)).blend(img, (70, 60, 60), 0.8)
        hyd = s.get("hydration", 0.0)
        if hyd > 0:
            mask(("hydration",), lambda: _ring(r, a.R * 0.96, a.R * 0.08)
                 * np.clip(1 - _angle_diff(theta, a.main_angle) / 0.35, 0, 1)).blend(img, (245, 245, 250), 0.75 * hyd)
        if self.view == "superior":
            self._paint_trabeculectomy(img, s)
        if self.view == "retina":
            self._paint_ports(img, s.get("ports", 0.0))
        return img

    def _groove(self) -> np.ndarray:
        a = self.a
        u = self.dx * math.cos(a.groove_angle) + self.dy * math.sin(a.groove_angle)
        v = -self.dx * math.sin(a.groove_angle) + self.dy * math.cos(a.groove_angle)
        return np.clip(1.2 - np.minimum(np.abs(u), np.abs(v)) / (0.04 * self.rp + 0.5), 0, 1)

    def _paint_iol(self, img: np.ndarray, iol: float) -> None:
        def build() -> np.ndarray:
            a, rp = self.a, self.rp
            off = (1 - iol) * 0.4 * rp  # the lens unfolds off-centre, then is centred
            ox, oy = self.dx - off * math.cos(a.main_angle), self.dy - off * math.sin(a.main_angle)
            squash = 0.3 + 0.7 * iol
            c, s_ = math.cos(a.main_angle), math.sin(a.main_angle)
            u, v = ox * c + oy * s_, (-ox * s_ + oy * c) / squash
            ro = 0.5 * rp
            d = np.hypot(u, v)
            edge = np.maximum(_ring(d, ro, 0.9), 0.16 * _disc(d, ro))
            for sign in (1, -1):
                hd = np.hypot(u - sign * 0.55 * ro, v + sign * 0.5 * ro)
                edge = np.maximum(edge, iol * _ring(hd, 1.05 * ro, 0.7) * (sign * v > 0.1 * ro) * (d > ro))
            return edge

        self._mask(("iol", iol), build).blend(img, (250, 250, 245), 0.75)

    def _paint_trabeculectomy(self, img: np.ndarray, s: dict[str, float]) -> None:
        a, R, mask = self.a, self.a.R, self._mask
        u, v, ell, inside = self._site_coordinates()
        conj = s.get("conj_open", 0.0)
        if conj > 0:
            mask(("conj-bare",), lambda: _disc(ell, 1.0, 0.05)).blend(img, (245, 238, 232), 0.7 * conj)
            mask(("conj-edge", conj), lambda: _ring(ell, 1.08 + 0.2 * (1 - conj), 0.07) * (v < 0.1 * R)) \
                .blend(img, (200, 110, 110), 0.85 * conj)
        flap = s.get("flap", 0.0)
        if flap > 0:
            mask(("flap-bed",), lambda: inside).blend(img, (215, 190, 180), 0.4 * flap)

            def border() -> np.ndarray:
                edge = inside & ((np.abs(u) > 0.26 * R) | (v < -0.21 * R))
                order = np.where(u < 0, (v + 0.25 * R) / (0.55 * R) * 0.35, 0.65 + (0.3 * R - v) / (0.55 * R) * 0.35)
                order = np.where(v < -0.21 * R, 0.35 + (u + 0.3 * R) / (0.6 * R) * 0.3, order)
                return edge & (order <= flap)

            mask(("flap", flap), border).blend(img, (120, 70, 70), 0.9)
        sponges = s.get("sponges", 0.0)
        if sponges > 0:
            mask(("sponges",), lambda: np.maximum(*[_disc(np.hypot((u - k * 0.35 * R) / (0.16 * R),
                                                                   (v + 0.05 * R) / (0.08 * R)), 1.0, 0.1)
                                                    for k in (-1, 1)])).blend(img, (250, 250, 235), 0.95 * sponges)
        scl = s.get("sclerostomy", 0.0)
        if scl > 0:
            mask(("sclerostomy", scl), lambda: (np.abs(u) < 0.12 * R * scl) & (v > 0.12 * R) & (v < 0.3 * R)) \
                .blend(img, (40, 25, 30), 0.9)
        iri = s.get("iridectomy", 0.0)
        if iri > 0:
            mask(("iridectomy", iri), lambda: (_angle_diff(self.theta, -math.pi / 2) < 0.18 * iri)
                 & (self.r > self.rp) & (self.r < 0.94 * R)).blend(img, (30, 15, 15), 0.9)
        n_sutures = int(round(3 * s.get("sutures", 0.0)))
        if n_sutures:
            mask(("sutures", n_sutures), lambda: np.any([(np.abs(u - (-0.27 + 0.27 * k) * R) < 0.8)
                                                         & (np.abs(v + 0.23 * R) < 0.09 * R)
                                                         for k in range(n_sutures)], axis=0)) \
                .blend(img, (20, 20, 30), 0.95)
        bleb = s.get("bleb", 0.0)
        if bleb > 0:
            mask(("bleb",), lambda: np.clip(1 - ell, 0, 1)).blend(img, (250, 235, 230), 0.45 * bleb)
            mask(("bleb-shine",), lambda: _ring(ell, 0.55, 0.1)).blend(img, (255, 255, 255), 0.4 * bleb)
        blood = s.get("blood", 0.0)
        if blood > 0:
            mask(("blood",), lambda: np.max([_disc(np.hypot(self.dx + a.cx - bx, self.dy + a.cy - by), br, 0.8)
                                             for bx, by, br in self.blood_spots], axis=0)) \
                .blend(img, (150, 15, 20), 0.85 * blood)

    def _site_coordinates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Trabeculectomy site frame: centred above the limbus at 12 o'clock; ell < 1 inside the peritomy."""
        if self._site is None:
            R = self.a.R
            u, v = self.dx, self.dy + 1.3 * R
            ell = np.hypot(u / (0.6 * R), v / (0.35 * R))
            inside = (np.abs(u) < 0.3 * R) & (v > -0.25 * R) & (v < 0.3 * R)  # under the scleral flap
            self._site = (u, v, ell, inside)
        return self._site

    def _paint_ports(self, img: np.ndarray, ports: float) -> None:
        a = self.a
        for k, ang in enumerate(a.port_angles):
            if ports * 3 > k + 0.01:
                px, py = a.cx + 1.35 * a.R * math.cos(ang), a.cy + 1.35 * a.R * math.sin(ang)
                d = np.hypot(self.dx + a.cx - px, self.dy + a.cy - py)
                self._mask(("hub", k), lambda d=d: _disc(d, 0.11 * a.R, 0.8)).blend(img, a.hub_color)
                self._mask(("hub-lumen", k), lambda d=d: _disc(d, 0.05 * a.R, 0.8)).blend(img, (30, 30, 30))

    def _paint_fundus_state(self, s: dict[str, float]) -> np.ndarray:
        a, r, F, mask = self.a, self.r, self.F, self._mask
        img = self.fundus.copy()
        field = mask(("field",), lambda: _disc(r, F, 1.5))
        if s.get("detached", 0.0) > 0:  # a grey, elevated detached retina in one quadrant
            mask(("detached",), lambda: np.clip(1 - _angle_diff(self.theta, a.disc_angle + math.pi * 0.75) / 0.9, 0, 1)
                 * (r > 0.4 * F) * field.full(r.shape)).blend(img, (190, 170, 160),
                                                              0.5 * s["detached"] * (1 - 0.7 * s.get("air", 0.0)))
        membrane = s.get("membrane", 0.0)
        if membrane > 0:
            def sheet() -> np.ndarray:
                torn = ((self.theta - a.disc_angle) % (2 * np.pi)) / (2 * np.pi) <= membrane
                wrinkles = 0.7 + 0.3 * np.sin(self.rm * 1.3 + 5 * self.fine)
                return np.clip(1 - self.rm / (0.38 * F), 0, 1) ** 0.5 * torn * wrinkles * field.full(r.shape)

            mask(("membrane", membrane), sheet).blend(img, (235, 230, 220), 0.55)
        n_spots = int(round(s.get("laser", 0.0) * len(self.laser_spots)))
        if n_spots:
            mask(("laser", n_spots), lambda: np.max([_disc(np.hypot(self.dx + a.cx - x, self.dy + a.cy - y), 0.035 * F, 0.7)
                                                     for x, y in self.laser_spots[:n_spots]], axis=0)) \
                .blend(img, (235, 225, 205), 0.85)
        haze = s.get("haze", 0.0)
        if haze > 0:
            color = (150, 40, 30) if s.get("blood", 0.0) > 0 else (170, 160, 140)
            mask(("haze",), lambda: field.full(r.shape) * (0.8 + 0.2 * self.noise)).blend(img, color, 0.75 * haze)
        air = s.get("air", 0.0)
        if air > 0:
            img *= (1 + 0.2 * air)
            mask(("meniscus",), lambda: _ring(r, 0.93 * F, 1.5)).blend(img, (255, 255, 250), 0.6 * air)
        oil = s.get("oil", 0.0)
        if oil > 0:
            field.blend(img, (230, 200, 90), 0.18 * oil)
            mask(("oil-edge",), lambda: _ring(r, 0.72 * F, 1.0)).blend(img, (255, 250, 210), 0.5 * oil)
        return img


@dataclass
class _Local:
    """A mask stored over its bounding box only, so blending touches only the pixels it covers."""

    sy: slice
    sx: slice
    a: np.ndarray  # (h, w) float32 in [0, 1]

    @classmethod
    def of(cls, full: np.ndarray) -> _Local:
        on = full > 1e-3
        rows, cols = np.flatnonzero(on.any(1)), np.flatnonzero(on.any(0))
        if len(rows) == 0:
            return cls(slice(0, 0), slice(0, 0), np.zeros((0, 0), np.float32))
        sy, sx = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
        return cls(sy, sx, np.ascontiguousarray(full[sy, sx]))

    def full(self, shape: tuple[int, int]) -> np.ndarray:
        out = np.zeros(shape, np.float32)
        out[self.sy, self.sx] = self.a
        return out

    def blend(self, img: np.ndarray, color, alpha: float = 1.0) -> None:
        if self.a.size == 0:
            return
        sub = img[self.sy, self.sx]
        c = color[self.sy, self.sx] if isinstance(color, np.ndarray) and color.ndim == 3 else np.asarray(color, np.float32)
        sub += (c - sub) * (self.a * alpha)[..., None]
