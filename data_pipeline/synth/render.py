"""Frames of one planned video: tissue (anatomy.py) + instruments + nuisances.

Instruments pivot at their port (the incision they pass through), so their shafts
point where real ones do; each tool type has one fixed look (taxonomy.TOOL_LOOKS).
A tool is drawn on exactly the frames where the plan says it is present, which is
what the tools CSV records. Nuisances (camera jitter, light drift and steps, focus
loss, the microscope's light reflex, a glove crossing the view, sensor noise) are
drawn from the video's render stream and are not annotated.

:func:`render_frames` is the encoder-free path the determinism test compares.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .anatomy import TissuePainter, sample_anatomy
from .config import NuisanceConfig
from .plan import STREAM_ANATOMY, STREAM_RENDER, ToolInterval, VideoPlan, video_rng
from .taxonomy import TOOL_LOOKS, ToolLook

logger = logging.getLogger(__name__)

ENTRY_S = 0.5  # seconds a tool takes to slide in from the edge of the eye (and out again)
ENTRY_R = 1.15  # where it enters, in limbus radii from the eye centre (inside the frame)


class Renderer:
    """Draws frame ``i`` of ``plan``; frames must be requested in order (``iter_frames``)."""

    def __init__(self, plan: VideoPlan, nuisance: NuisanceConfig, seed: int):
        self.plan = plan
        self.nz = nuisance
        H, W = plan.height, plan.width
        self.margin = max(2, math.ceil(nuisance.jitter_px * H * 1.6) + 1)
        view = plan.surgery_type.view
        self.anatomy = sample_anatomy(video_rng(seed, plan.index, STREAM_ANATOMY), view, H, W, self.margin)
        self.painter = TissuePainter(self.anatomy, view)
        rng = video_rng(seed, plan.index, STREAM_RENDER)
        self.rng = rng
        self.starts = plan.states_at_segment_starts()
        fps = plan.fps
        n = plan.n_frames
        t = np.arange(n) / fps
        # Camera jitter: a few slow sinusoids plus hand tremor.
        amp = nuisance.jitter_px * H
        jx = sum(rng.uniform(0.2, 0.6) * np.sin(2 * np.pi * rng.uniform(0.05, 0.8) * t + rng.uniform(0, 6.3))
                 for _ in range(3))
        jy = sum(rng.uniform(0.2, 0.6) * np.sin(2 * np.pi * rng.uniform(0.05, 0.8) * t + rng.uniform(0, 6.3))
                 for _ in range(3))
        self.jitter = np.clip(np.stack([jx, jy], 1) * amp * 0.8 + rng.normal(0, 0.15 * amp, (n, 2)),
                              -self.margin + 1, self.margin - 1)
        # Light: slow drift, and sometimes one sudden adjustment.
        gain = 1 + nuisance.illumination * np.sin(2 * np.pi * rng.uniform(0.01, 0.05) * t + rng.uniform(0, 6.3))
        if rng.random() < nuisance.light_step_prob and n > 2:
            step_at = int(rng.integers(1, n))
            gain[step_at:] *= rng.uniform(0.75, 1.2)
        self.gain = gain
        warmth = rng.uniform(-0.05, 0.05)
        self.channel_gain = np.array([1 + warmth, 1.0, 1 - warmth], np.float32) * self.anatomy.white_balance
        # Focus loss: short windows covering about blur_prob of the time.
        self.blur = np.zeros(n, np.float32)
        remaining = int(nuisance.blur_prob * n)
        while remaining > 0:
            length = int(min(remaining, rng.integers(max(1, fps // 2), 2 * fps + 1)))
            s0 = int(rng.integers(0, max(1, n - length)))
            self.blur[s0:s0 + length] = rng.uniform(0.8, 1.8) * H / 160
            remaining -= length
        # A glove or drape edge crossing the view.
        self.occlusion = None
        if rng.random() < nuisance.occlusion_prob and n > fps:
            length = int(rng.integers(fps, 3 * fps + 1))
            s0 = int(rng.integers(0, max(1, n - length)))
            self.occlusion = (s0, s0 + length, rng.uniform(0, 2 * np.pi),
                              ((150, 160, 200), (230, 220, 200), (60, 100, 120))[rng.integers(3)])
        self.noise_bank = rng.normal(0, nuisance.sensor_noise, (4, H, W, 3)).astype(np.float32) \
            if nuisance.sensor_noise > 0 else None
        self.phases = rng.uniform(0, 2 * np.pi, size=(len(plan.tools), 4))
        self.tempo = rng.uniform(0.7, 1.4)  # a calm or a brisk surgeon: scales how fast tools move
        self.spec_offsets = [(rng.uniform(-0.45, 0.1), rng.uniform(-0.5, -0.1), rng.uniform(0.05, 0.09))
                             for _ in range(2)]

    # ---- geometry ------------------------------------------------------------------------------
    def _ports(self, fundus: bool) -> dict[str, tuple[float, float]]:
        a = self.anatomy
        rad = a.R * (1.35 if fundus else 1.0)
        return {
            "main": (a.cx + rad * math.cos(a.main_angle), a.cy + rad * math.sin(a.main_angle)),
            "side": (a.cx + rad * math.cos(a.side_angle), a.cy + rad * math.sin(a.side_angle)),
            "site": (a.cx + 4 * a.R * math.cos(a.free_angles["site"]), a.cy + 4 * a.R * math.sin(a.free_angles["site"])),
            "free": (a.cx + 4 * a.R * math.cos(a.free_angles["free"]), a.cy + 4 * a.R * math.sin(a.free_angles["free"])),
        }

    def tip_position(self, iv: ToolInterval, k: int, frame: int, fundus: bool) -> tuple[float, float]:
        """Where the tool's tip is (canvas pixels) at ``frame``: the working position of its motion, reached by
        sliding in from the edge of the eye over the first ``ENTRY_S`` seconds (and out over the last)."""
        x, y = self._working_tip(iv, k, frame, fundus)
        fps = self.plan.fps
        f = min(1.0, (frame - iv.start + 1) / (ENTRY_S * fps), (iv.end - frame) / (ENTRY_S * fps))
        if f >= 1.0:
            return x, y
        a = self.anatomy
        pivot = self._ports(fundus).get(iv.port, (a.cx + 4 * a.R, a.cy))
        ang = math.atan2(pivot[1] - a.cy, pivot[0] - a.cx)
        ex, ey = a.cx + ENTRY_R * a.R * math.cos(ang), a.cy + ENTRY_R * a.R * math.sin(ang)
        f = f * f * (3 - 2 * f)  # smoothstep: the hand accelerates, then settles
        return ex + (x - ex) * f, ey + (y - ey) * f

    def _working_tip(self, iv: ToolInterval, k: int, frame: int, fundus: bool) -> tuple[float, float]:
        a, painter = self.anatomy, self.painter
        seg = self.plan.segments[iv.segment]
        p = (frame - seg.start + 0.5) / (seg.end - seg.start)
        q = (frame - iv.start + 0.5) / (iv.end - iv.start)
        t = frame / self.plan.fps * self.tempo
        ph = self.phases[k]
        cx, cy = a.cx, a.cy
        rp = painter.F * 0.7 if fundus else painter.rp
        tremor = 0.03 * a.R
        tx, ty = tremor * math.sin(7 * t + ph[0]), tremor * math.sin(5.3 * t + ph[1])
        port = self._ports(fundus).get(iv.port, (cx, cy))
        m = iv.motion
        if m == "incise":
            f = 0.05 + 0.4 * min(1.0, q * 1.5)
            return port[0] + (cx - port[0]) * f + tx, port[1] + (cy - port[1]) * f + ty
        if m in ("hold", "wound"):
            f = 0.25 if m == "hold" else 0.05
            if iv.port in ("free", "site"):  # fixation forceps grip the limbus
                ang = a.main_angle + math.pi + 0.5 * math.sin(ph[2])
                return cx + 1.05 * a.R * math.cos(ang) + tx, cy + 1.05 * a.R * math.sin(ang) + ty
            return port[0] + (cx - port[0]) * f + tx, port[1] + (cy - port[1]) * f + ty
        if m == "spiral":
            rad = rp * 0.65 * (1 - 0.7 * p)
            return cx + rad * math.cos(2.2 * t + ph[0]) + tx, cy + rad * math.sin(2.2 * t + ph[0]) + ty
        if m == "circle":
            ang = a.rhexis_start + 2 * math.pi * p
            return cx + 0.62 * rp * math.cos(ang) + tx, cy + 0.62 * rp * math.sin(ang) + ty
        if m == "edge":
            ang = a.main_angle + math.pi + 0.6 * math.sin(0.8 * t + ph[0])
            return cx + 0.6 * rp * math.cos(ang) + tx, cy + 0.6 * rp * math.sin(ang) + ty
        if m == "sweep":
            return (cx + 0.45 * rp * math.sin(1.3 * t + ph[0]) + tx, cy + 0.3 * rp * math.sin(0.9 * t + ph[1]) + ty)
        if m == "periphery":
            ang = ph[2] + 0.9 * t
            return cx + 0.78 * rp * math.cos(ang) + tx, cy + 0.78 * rp * math.sin(ang) + ty
        if m == "site":
            sx, sy = cx, cy - 1.3 * a.R
            return sx + 0.25 * a.R * math.sin(1.1 * t + ph[0]) + tx, sy + 0.1 * a.R * math.sin(0.7 * t + ph[1]) + ty
        if m == "flap":  # trace the flap's three cut sides
            sx, sy = cx, cy - 1.3 * a.R
            s = (p * 3) % 3
            if s < 1:
                return sx - 0.28 * a.R + tx, sy + (0.3 - 0.55 * s) * a.R + ty
            if s < 2:
                return sx + (-0.28 + 0.56 * (s - 1)) * a.R + tx, sy - 0.25 * a.R + ty
            return sx + 0.28 * a.R + tx, sy + (-0.25 + 0.55 * (s - 2)) * a.R + ty
        if m == "ports":
            ang = a.port_angles[min(2, int(p * 3))]
            return cx + 1.35 * a.R * math.cos(ang) + tx, cy + 1.35 * a.R * math.sin(ang) + ty
        if m == "macula" and fundus:
            mx, my = painter.macula_xy
            return mx + 0.15 * rp * math.sin(1.7 * t + ph[0]) + tx, my + 0.15 * rp * math.sin(1.1 * t) + ty
        if m == "disc" and fundus:
            dx, dy = painter.disc_xy
            return dx + 0.1 * rp * math.sin(t + ph[0]) + tx, dy + 0.1 * rp * math.sin(0.8 * t) + ty
        if m == "spots" and fundus:
            spots = painter.laser_spots
            x, y = spots[min(len(spots) - 1, int(p * len(spots)))]
            return x + tx * 0.5, y + ty * 0.5
        return cx + 0.15 * rp * math.sin(2 * t + ph[0]) + tx, cy + 0.15 * rp * math.cos(1.7 * t + ph[1]) + ty

    # ---- frames -------------------------------------------------------------------------------
    def frame(self, i: int, draw_tools: bool = True) -> np.ndarray:
        """Frame ``i``; ``draw_tools=False`` leaves the instruments out (tests compare the two)."""
        plan, a, H, W = self.plan, self.anatomy, self.plan.height, self.plan.width
        state = plan.state_at(i, self.starts)
        fundus = plan.surgery_type.view == "retina" and state.get("fundus", 0) >= 0.5
        canvas = self.painter.paint(state)
        ox = int(round(self.margin + self.jitter[i, 0]))
        oy = int(round(self.margin + self.jitter[i, 1]))
        img = Image.fromarray(canvas[oy:oy + H, ox:ox + W])
        draw = ImageDraw.Draw(img)
        shift = (ox, oy)
        if self.nz.specular > 0:
            for dx, dy, size in self.spec_offsets:
                x, y = a.cx + dx * a.R - ox, a.cy + dy * a.R - oy
                rr = size * a.R
                level = int(200 + 55 * min(1.0, self.nz.specular))
                draw.ellipse((x - rr, y - rr * 0.6, x + rr, y + rr * 0.6), fill=(level, level, level))
        for k, iv in enumerate(plan.tools):
            if draw_tools and iv.start <= i < iv.end:
                tip = self.tip_position(iv, k, i, fundus)
                pivot = self._ports(fundus).get(iv.port, (a.cx + 4 * a.R, a.cy))
                if math.hypot(tip[0] - a.cx, tip[1] - a.cy) >= 0.98 * math.hypot(pivot[0] - a.cx, pivot[1] - a.cy):
                    # The tip is not yet through its port (sliding in): the shaft points straight outwards.
                    pivot = (a.cx + 4 * (pivot[0] - a.cx), a.cy + 4 * (pivot[1] - a.cy))
                _draw_tool(draw, TOOL_LOOKS[iv.tool], tip, pivot, a.R, shift, self.plan)
        if self.occlusion is not None and self.occlusion[0] <= i < self.occlusion[1]:
            s0, s1, ang, color = self.occlusion
            f = (i - s0) / (s1 - s0)
            depth = math.sin(math.pi * f) * 0.45 * H
            ex, ey = W / 2 + math.cos(ang) * (W * 0.75 - depth), H / 2 + math.sin(ang) * (H * 0.75 - depth)
            draw.ellipse((ex - 0.5 * W, ey - 0.5 * H, ex + 0.5 * W, ey + 0.5 * H), fill=color)
        if self.blur[i] > 0:
            img = img.filter(ImageFilter.GaussianBlur(float(self.blur[i])))
        # Light level, colour temperature and white balance in one per-channel gain.
        out = np.asarray(img, np.float32) * (self.gain[i] * self.channel_gain)
        if self.noise_bank is not None:
            out += self.noise_bank[i % len(self.noise_bank)]
        return np.clip(out, 0, 255).astype(np.uint8)

    def iter_frames(self) -> Iterator[np.ndarray]:
        for i in range(self.plan.n_frames):
            yield self.frame(i)


def render_frames(plan: VideoPlan, nuisance: NuisanceConfig, seed: int) -> np.ndarray:
    """All frames of ``plan`` as uint8 (T, H, W, 3), without encoding."""
    return np.stack(list(Renderer(plan, nuisance, seed).iter_frames()))


def _draw_tool(draw: ImageDraw.ImageDraw, look: ToolLook, tip, pivot, R: float, shift, plan: VideoPlan) -> None:
    """Draw one instrument whose tip is at ``tip`` and whose shaft runs through ``pivot`` and off-frame."""
    x0, y0 = tip[0] - shift[0], tip[1] - shift[1]
    dx, dy = pivot[0] - tip[0], pivot[1] - tip[1]
    norm = math.hypot(dx, dy)
    if norm < 1e-3:
        dx, dy, norm = 1.0, 0.0, 1.0
    dx, dy = dx / norm, dy / norm  # towards the handle
    nx, ny = -dy, dx
    w = max(1.0, look.width * R)
    tl = look.tip * R
    far = 3 * max(plan.width, plan.height)

    def P(along: float, across: float = 0.0) -> tuple[float, float]:
        return (x0 + dx * along + nx * across, y0 + dy * along + ny * across)

    def line(a: float, b: float, width: float, color, across: float = 0.0) -> None:
        draw.line([P(a, across), P(b, across)], fill=tuple(color), width=max(1, int(round(width))))

    shadow = (35, 30, 30)
    sh = max(1.0, 0.05 * R)
    draw.line([(P(tl)[0] + sh, P(tl)[1] + sh), (P(far)[0] + sh, P(far)[1] + sh)], fill=shadow,
              width=max(1, int(round(w * (1.6 if look.shape in ("handpiece", "injector") else 1.0)))))
    shape, c, acc = look.shape, look.color, look.accent
    if shape == "knife":
        line(tl, far, w, c)
        draw.polygon([P(0), P(tl, w * 1.6), P(tl, -w * 0.6)], fill=tuple(acc))
    elif shape == "cannula":
        line(0, far, w, c)
        line(tl * 2.5, tl * 3.6, w * 3, acc)
    elif shape in ("forceps", "scissors"):
        spread = w * (0.5 if shape == "forceps" else 1.3)
        for s in (1, -1):
            draw.line([P(0, s * spread * 0.4), P(tl, s * spread * 2.2)], fill=tuple(acc if shape == "scissors" else c),
                      width=max(1, int(round(w * 0.7))))
        line(tl, far, w * 1.8, c)
        line(tl * 2.2, tl * 2.8, w * 2.6, acc)
    elif shape == "handpiece":
        line(0, tl, w * 0.45, acc)
        line(tl, far, w * 1.6, c)
        line(tl * 1.1, tl * 1.5, w * 1.9, acc)
    elif shape == "injector":
        line(0, tl, w * 0.45, acc)
        line(tl, far, w * 1.5, c)
        line(tl * 3, tl * 4, w * 1.5, acc)
    elif shape == "hook":
        line(w * 2, far, w, c)
        draw.line([P(w * 2), P(0, w * 2.5)], fill=tuple(acc), width=max(1, int(round(w))))
        line(tl * 4, tl * 6, w * 2.2, acc)
    elif shape == "ring":
        rr = tl
        draw.ellipse((x0 - rr, y0 - rr, x0 + rr, y0 + rr), outline=tuple(c), width=max(1, int(round(w))))
        line(rr, far, w * 1.5, acc)
    elif shape == "marker":
        line(tl, far, w * 1.4, c)
        line(0, tl, w * 0.8, acc)
    elif shape == "sponge":
        line(tl * 0.5, far, w * 0.6, c)
        rr = tl * 0.5
        draw.ellipse((x0 - rr, y0 - rr * 0.7, x0 + rr, y0 + rr * 0.7), fill=tuple(acc))
    elif shape == "needle":
        rr = tl * 0.5
        draw.arc((x0 - rr, y0 - rr, x0 + rr, y0 + rr), 200, 340, fill=tuple(acc), width=max(1, int(round(w * 1.5))))
        line(0, far, 1, c)
    elif shape == "light_pipe":
        line(0, far, w, c)
        rr = tl * 0.7
        draw.ellipse((x0 - rr, y0 - rr, x0 + rr, y0 + rr), fill=tuple(acc))
    elif shape == "probe":
        line(0, far, w, c)
        bx, by = P(-tl * 0.6)
        rr = max(1.0, 0.04 * R)
        draw.ellipse((bx - rr, by - rr, bx + rr, by + rr), fill=tuple(acc))
    elif shape == "trocar":
        rr = w * 1.6
        draw.ellipse((x0 - rr, y0 - rr, x0 + rr, y0 + rr), fill=tuple(acc))
        line(0, far, w * 1.2, c)
        line(tl * 2, far, w * 2.2, c)
    elif shape == "punch":
        line(0, tl, w * 1.4, acc)
        line(tl, far, w, c)
    elif shape == "cautery":
        for s in (1, -1):
            line(0, far, w * 0.45, c, across=s * w * 0.5)
        line(0, tl * 0.3, w * 1.2, acc)
    else:  # an unknown shape is a programming error in the taxonomy table
        raise ValueError(f"no drawing routine for tool shape {shape!r}")
