"""Surgery types, phases and instruments, as data.

Phase names of cataract surgery are Cataract-101's ten phases, with the dataset's own
spelling ("Phacoemulsificiation"). Phase ids are unique across surgery types
(cataract 1-10, trabeculectomy 11-18, pars plana vitrectomy 19-26), so one
Cataract-101-format ``phases.csv`` covers every type. Instrument names follow the
21-tool list of CATARACTS where the tool exists there; tools of the other surgeries
are added after them.

Each phase says which tools appear (and from which port, moving how), and what the
tissue looks like at its end (``targets``, reached linearly over the phase) or from
its start (``sets``, instantly: e.g. switching to the fundus view). The renderer turns
that state into pixels; the tools CSV records exactly the tools that are drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

# CATARACTS' 21 tools, in the challenge's column order.
CATARACTS_TOOLS: tuple[str, ...] = (
    "biomarker", "Charleux cannula", "hydrodissection cannula", "Rycroft cannula", "viscoelastic cannula",
    "cotton", "capsulorhexis cystotome", "Bonn forceps", "capsulorhexis forceps", "Troutman forceps",
    "needle holder", "irrigation/aspiration handpiece", "phacoemulsifier handpiece", "vitrectomy handpiece",
    "implant injector", "primary incision knife", "secondary incision knife", "micromanipulator",
    "suture needle", "Mendez ring", "Vannas scissors",
)
# Tools of trabeculectomy and vitrectomy that CATARACTS does not list.
EXTRA_TOOLS: tuple[str, ...] = (
    "Westcott scissors", "crescent knife", "Kelly punch", "MMC sponge", "bipolar cautery",
    "trocar cannula", "endoilluminator", "ILM forceps", "endolaser probe", "backflush needle", "tamponade syringe",
)
ALL_TOOLS: tuple[str, ...] = CATARACTS_TOOLS + EXTRA_TOOLS


@dataclass(frozen=True)
class ToolLook:
    """How a tool type looks in every video (real instruments do not change between surgeries).

    ``shape`` picks the drawing routine; sizes are fractions of the limbus radius.
    """

    shape: str  # knife | cannula | forceps | handpiece | injector | scissors | hook | ring | marker
    # | sponge | needle | light_pipe | probe | trocar | punch | cautery
    color: tuple[int, int, int]  # shaft
    accent: tuple[int, int, int]  # handle, hub, blade or glow
    width: float = 0.06  # shaft width
    tip: float = 0.25  # length of the tip part (blade, prongs, sleeve)


TOOL_LOOKS: MappingProxyType = MappingProxyType({
    "biomarker": ToolLook("marker", (235, 235, 240), (120, 40, 170), 0.10, 0.15),
    "Charleux cannula": ToolLook("cannula", (200, 200, 205), (240, 200, 40), 0.035, 0.20),
    "hydrodissection cannula": ToolLook("cannula", (205, 205, 210), (60, 140, 230), 0.035, 0.30),
    "Rycroft cannula": ToolLook("cannula", (190, 190, 195), (230, 90, 40), 0.035, 0.18),
    "viscoelastic cannula": ToolLook("cannula", (210, 210, 215), (40, 190, 120), 0.05, 0.22),
    "cotton": ToolLook("sponge", (220, 200, 160), (250, 250, 245), 0.06, 0.22),
    "capsulorhexis cystotome": ToolLook("hook", (200, 200, 200), (250, 160, 200), 0.03, 0.12),
    "Bonn forceps": ToolLook("forceps", (170, 170, 175), (90, 90, 95), 0.05, 0.25),
    "capsulorhexis forceps": ToolLook("forceps", (215, 190, 110), (150, 120, 60), 0.045, 0.35),
    "Troutman forceps": ToolLook("forceps", (120, 125, 135), (60, 60, 70), 0.07, 0.22),
    "needle holder": ToolLook("forceps", (200, 170, 90), (90, 70, 40), 0.08, 0.18),
    "irrigation/aspiration handpiece": ToolLook("handpiece", (150, 160, 175), (215, 225, 235), 0.16, 0.35),
    "phacoemulsifier handpiece": ToolLook("handpiece", (90, 100, 115), (230, 215, 120), 0.20, 0.30),
    "vitrectomy handpiece": ToolLook("handpiece", (60, 130, 200), (225, 225, 230), 0.12, 0.40),
    "implant injector": ToolLook("injector", (235, 235, 230), (120, 170, 230), 0.20, 0.30),
    "primary incision knife": ToolLook("knife", (170, 170, 180), (240, 240, 250), 0.05, 0.30),
    "secondary incision knife": ToolLook("knife", (130, 170, 130), (230, 240, 230), 0.04, 0.18),
    "micromanipulator": ToolLook("hook", (110, 110, 120), (230, 230, 235), 0.035, 0.15),
    "suture needle": ToolLook("needle", (40, 40, 45), (220, 220, 230), 0.02, 0.20),
    "Mendez ring": ToolLook("ring", (200, 200, 210), (80, 80, 90), 0.05, 0.55),
    "Vannas scissors": ToolLook("scissors", (180, 180, 190), (100, 100, 110), 0.05, 0.22),
    "Westcott scissors": ToolLook("scissors", (100, 110, 160), (60, 70, 120), 0.06, 0.30),
    "crescent knife": ToolLook("knife", (160, 150, 120), (245, 235, 200), 0.05, 0.22),
    "Kelly punch": ToolLook("punch", (140, 140, 150), (70, 70, 80), 0.09, 0.20),
    "MMC sponge": ToolLook("sponge", (170, 170, 175), (250, 240, 140), 0.04, 0.28),
    "bipolar cautery": ToolLook("cautery", (60, 80, 170), (230, 230, 235), 0.07, 0.25),
    "trocar cannula": ToolLook("trocar", (170, 170, 180), (230, 60, 60), 0.07, 0.20),
    "endoilluminator": ToolLook("light_pipe", (120, 120, 130), (255, 255, 230), 0.05, 0.20),
    "ILM forceps": ToolLook("forceps", (100, 140, 100), (40, 70, 40), 0.04, 0.30),
    "endolaser probe": ToolLook("probe", (90, 90, 100), (80, 255, 80), 0.05, 0.20),
    "backflush needle": ToolLook("cannula", (150, 150, 160), (250, 250, 120), 0.05, 0.20),
    "tamponade syringe": ToolLook("injector", (230, 230, 240), (240, 220, 110), 0.12, 0.20),
})


@dataclass(frozen=True)
class ToolUse:
    """A tool in a phase: where it enters, how its tip moves, how often it is used."""

    tool: str
    port: str = "main"  # main | side | site | free: the shaft pivots at this point
    motion: str = "center"  # see render.tip_position
    prob: float = 1.0  # chance the tool appears in a given occurrence of the phase
    primary: bool = True  # present for most of the phase (else for a random sub-interval)


@dataclass(frozen=True)
class PhaseSpec:
    id: int  # globally unique across surgery types
    name: str
    tools: tuple[ToolUse, ...]
    weight: float  # relative mean duration
    targets: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    sets: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    pulses: tuple[str, ...] = ()  # state keys that rise and fall within the phase (sin(pi * progress))
    skip_prob: float = 0.0


def _p(id: int, name: str, tools, weight: float, targets=None, sets=None, pulses=(), skip_prob=0.0) -> PhaseSpec:
    return PhaseSpec(id, name, tuple(tools), weight, MappingProxyType(dict(targets or {})),
                     MappingProxyType(dict(sets or {})), tuple(pulses), skip_prob)


@dataclass(frozen=True)
class Indication:
    """Why the surgery is done; it shapes the title and which phases happen."""

    name: str
    titles: tuple[str, ...]
    skip: tuple[int, ...] = ()  # phase ids that never happen for this indication
    initial: tuple[tuple[str, float], ...] = ()  # tissue-state changes before surgery (e.g. no membrane)


@dataclass(frozen=True)
class SurgeryType:
    key: str
    name: str
    view: str  # anterior | superior | retina: how the renderer frames the eye
    phases: tuple[PhaseSpec, ...]
    initial: MappingProxyType  # tissue state before the first phase
    repeats: tuple[tuple[int, int, float], ...]  # (after phase id, inserted phase id, probability)
    indications: tuple[Indication, ...]

    def phase(self, phase_id: int) -> PhaseSpec:
        for p in self.phases:
            if p.id == phase_id:
                return p
        raise KeyError(f"{self.key} has no phase {phase_id}")


T = ToolUse

CATARACT = SurgeryType(
    key="cataract",
    name="Phacoemulsification cataract surgery",
    view="anterior",
    phases=(
        _p(1, "Incision", [T("primary incision knife", "main", "incise"), T("Bonn forceps", "side", "hold", 0.7),
                           T("secondary incision knife", "side", "incise", 0.6, False)],
           0.8, targets={"wound": 1.0, "sideport": 1.0}),
        _p(2, "Viscous agent injection", [T("viscoelastic cannula", "main", "spiral")], 0.6, targets={"ovd": 1.0}),
        _p(3, "Rhexis", [T("capsulorhexis cystotome", "main", "circle"),
                         T("capsulorhexis forceps", "main", "circle", 0.6, False)], 1.2, targets={"rhexis": 1.0}),
        _p(4, "Hydrodissection", [T("hydrodissection cannula", "main", "edge")], 0.7, pulses=("hydro",)),
        _p(5, "Phacoemulsificiation", [T("phacoemulsifier handpiece", "main", "sweep"),
                                       T("micromanipulator", "side", "sweep")],
           2.2, targets={"nucleus": 0.0}),
        _p(6, "Irrigation and aspiration", [T("irrigation/aspiration handpiece", "main", "periphery"),
                                            T("micromanipulator", "side", "hold", 0.3, False)],
           1.2, targets={"cortex": 0.0, "ovd": 0.0}),
        _p(7, "Capsule polishing", [T("Rycroft cannula", "main", "sweep"),
                                    T("irrigation/aspiration handpiece", "main", "center", 0.4, False)],
           0.6, targets={"haze": 0.0}, skip_prob=0.15),
        _p(8, "Lens implant setting-up", [T("implant injector", "main", "center"),
                                          T("micromanipulator", "side", "periphery", 0.7, False)],
           0.9, targets={"iol": 1.0}),
        _p(9, "Viscous agent removal", [T("irrigation/aspiration handpiece", "main", "spiral")],
           0.7, targets={"ovd": 0.0}),
        _p(10, "Tonifying and antibiotics", [T("Charleux cannula", "main", "wound"),
                                             T("hydrodissection cannula", "side", "wound", 0.3, False)],
           0.6, targets={"hydration": 1.0}),
    ),
    initial=MappingProxyType({"wound": 0.0, "sideport": 0.0, "ovd": 0.0, "rhexis": 0.0, "hydro": 0.0,
                              "nucleus": 1.0, "cortex": 1.0, "haze": 1.0, "iol": 0.0, "hydration": 0.0,
                              "density": 0.6}),
    # Cataract-101 shows viscoelastic re-injected before the lens, and extra I/A passes.
    repeats=((7, 2, 0.35), (6, 5, 0.1), (8, 6, 0.1)),
    indications=(
        Indication("age-related cataract", (
            "Phacoemulsification with posterior chamber IOL implantation for age-related cataract",
            "Cataract surgery: phaco with foldable IOL for senile cataract",
            "Routine phacoemulsification and in-the-bag IOL for age-related cataract",
        )),
        Indication("mature cataract", initial=(("density", 1.0),), titles=(
            "Phacoemulsification of a dense mature cataract with IOL implantation",
            "Phaco for brunescent mature cataract with posterior chamber IOL",
        )),
        Indication("posterior subcapsular cataract", (
            "Phacoemulsification for posterior subcapsular cataract with capsule polishing and IOL",
        )),
    ),
)

TRABECULECTOMY = SurgeryType(
    key="trabeculectomy",
    name="Trabeculectomy",
    view="superior",
    phases=(
        _p(11, "Conjunctival peritomy", [T("Westcott scissors", "site", "site"), T("Bonn forceps", "free", "hold", 0.8),
                                         T("bipolar cautery", "site", "site", 0.5, False)],
           1.0, targets={"conj_open": 1.0, "blood": 0.6}),
        _p(12, "Scleral flap dissection", [T("crescent knife", "site", "flap"), T("Bonn forceps", "free", "hold", 0.7)],
           1.3, targets={"flap": 1.0, "blood": 0.2}),
        _p(13, "Mitomycin C application", [T("MMC sponge", "site", "site"), T("Bonn forceps", "free", "hold", 0.5)],
           0.9, pulses=("sponges",)),
        _p(14, "Paracentesis", [T("secondary incision knife", "side", "incise")], 0.5, targets={"sideport": 1.0}),
        _p(15, "Sclerostomy", [T("Kelly punch", "site", "flap"), T("Vannas scissors", "site", "flap", 0.4, False)],
           0.8, targets={"sclerostomy": 1.0}),
        _p(16, "Peripheral iridectomy", [T("Vannas scissors", "site", "site"), T("Bonn forceps", "free", "hold", 0.8)],
           0.6, targets={"iridectomy": 1.0}),
        _p(17, "Scleral flap suturing", [T("needle holder", "site", "site"), T("suture needle", "site", "flap"),
                                         T("Bonn forceps", "free", "hold", 0.6, False)],
           1.2, targets={"sutures": 1.0}),
        _p(18, "Conjunctival closure", [T("needle holder", "site", "site"), T("suture needle", "site", "site"),
                                        T("cotton", "free", "site", 0.4, False)],
           1.0, targets={"conj_open": 0.0, "bleb": 1.0, "blood": 0.0}),
    ),
    initial=MappingProxyType({"conj_open": 0.0, "blood": 0.0, "flap": 0.0, "sponges": 0.0, "sideport": 0.0,
                              "sclerostomy": 0.0, "iridectomy": 0.0, "sutures": 0.0, "bleb": 0.0}),
    repeats=((12, 11, 0.1), (17, 16, 0.1)),
    indications=(
        Indication("primary open-angle glaucoma", (
            "Trabeculectomy with mitomycin C for primary open-angle glaucoma",
            "Fornix-based trabeculectomy with MMC for uncontrolled open-angle glaucoma",
        )),
        Indication("pseudoexfoliation glaucoma", (
            "Trabeculectomy with mitomycin C for pseudoexfoliation glaucoma",
        )),
        Indication("angle-closure glaucoma", (
            "Trabeculectomy with peripheral iridectomy for chronic angle-closure glaucoma",
        )),
    ),
)

VITRECTOMY = SurgeryType(
    key="vitrectomy",
    name="Pars plana vitrectomy",
    view="retina",
    phases=(
        _p(19, "Trocar placement", [T("trocar cannula", "free", "ports"), T("Bonn forceps", "free", "hold", 0.6)],
           0.8, targets={"ports": 1.0}),
        _p(20, "Core vitrectomy", [T("vitrectomy handpiece", "main", "sweep"), T("endoilluminator", "side", "sweep")],
           1.5, sets={"fundus": 1.0}, targets={"haze": 0.35}),
        _p(21, "Peripheral vitrectomy", [T("vitrectomy handpiece", "main", "periphery"),
                                         T("endoilluminator", "side", "periphery")],
           1.2, sets={"fundus": 1.0}, targets={"haze": 0.0}),
        _p(22, "Membrane peeling", [T("ILM forceps", "main", "macula"), T("endoilluminator", "side", "center")],
           1.3, sets={"fundus": 1.0}, targets={"membrane": 0.0}),
        _p(23, "Endolaser photocoagulation", [T("endolaser probe", "main", "spots"),
                                              T("endoilluminator", "side", "center")],
           1.0, sets={"fundus": 1.0}, targets={"laser": 1.0}),
        _p(24, "Fluid-air exchange", [T("backflush needle", "main", "disc"), T("endoilluminator", "side", "center")],
           0.8, sets={"fundus": 1.0}, targets={"air": 1.0}),
        _p(25, "Tamponade injection", [T("tamponade syringe", "main", "center")], 0.6,
           sets={"fundus": 1.0}, targets={"oil": 1.0}),
        _p(26, "Trocar removal", [T("Bonn forceps", "free", "ports"), T("cotton", "free", "hold", 0.6, False)],
           0.6, sets={"fundus": 0.0}, targets={"ports": 0.0}),
    ),
    initial=MappingProxyType({"ports": 0.0, "fundus": 0.0, "haze": 1.0, "membrane": 1.0, "laser": 0.0,
                              "air": 0.0, "oil": 0.0, "detached": 0.0, "blood": 0.0}),
    repeats=((21, 20, 0.15), (23, 21, 0.1)),
    indications=(
        Indication("epiretinal membrane", (
            "23-gauge pars plana vitrectomy with membrane peeling for epiretinal membrane",
            "Vitrectomy and ERM/ILM peeling for macular pucker",
        ), skip=(23, 25)),
        Indication("macular hole", (
            "Pars plana vitrectomy with ILM peeling and gas tamponade for full-thickness macular hole",
        ), skip=(23,)),
        Indication("rhegmatogenous retinal detachment", (
            "Pars plana vitrectomy with endolaser and silicone oil for rhegmatogenous retinal detachment",
            "25-gauge vitrectomy, fluid-air exchange and endolaser retinopexy for retinal detachment",
        ), skip=(22,), initial=(("membrane", 0.0), ("detached", 1.0))),
        Indication("vitreous hemorrhage", (
            "Pars plana vitrectomy with panretinal endolaser for diabetic vitreous hemorrhage",
        ), skip=(22, 24, 25), initial=(("membrane", 0.0), ("blood", 1.0))),
    ),
)

SURGERY_TYPES: MappingProxyType = MappingProxyType({s.key: s for s in (CATARACT, TRABECULECTOMY, VITRECTOMY)})


def all_phases() -> list[PhaseSpec]:
    """Every phase of every surgery type, ordered by global id."""
    return sorted((p for s in SURGERY_TYPES.values() for p in s.phases), key=lambda p: p.id)


def phase_names() -> dict[int, str]:
    return {p.id: p.name for p in all_phases()}


def surgery_of_phase(phase_id: int) -> str:
    for s in SURGERY_TYPES.values():
        if any(p.id == phase_id for p in s.phases):
            return s.key
    raise KeyError(phase_id)


def check_taxonomy() -> list[str]:
    """Inconsistencies in the tables above (empty when all is well); the tests call this."""
    problems = []
    ids = [p.id for p in all_phases()]
    if len(ids) != len(set(ids)):
        problems.append("phase ids are not unique")
    for s in SURGERY_TYPES.values():
        for p in s.phases:
            problems += [f"{p.name}: tool {u.tool!r} has no look" for u in p.tools if u.tool not in TOOL_LOOKS]
            problems += [f"{s.key} phase {p.name}: state {k!r} not in the initial state"
                         for k in (*p.targets, *p.sets, *p.pulses) if k not in s.initial]
        for ind in s.indications:
            problems += [f"{s.key} indication {ind.name}: state {k!r} not in the initial state"
                         for k, _ in ind.initial if k not in s.initial]
    if set(TOOL_LOOKS) != set(ALL_TOOLS):
        problems.append("TOOL_LOOKS and ALL_TOOLS name different tools")
    return problems
