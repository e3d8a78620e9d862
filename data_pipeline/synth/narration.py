"""What the surgeon says: per-phase paraphrase templates, synonyms, and irrelevant chatter.

A template is a sentence with ``{slot}`` words; each slot is filled from
``SYNONYMS``, so one phase yields many paraphrases. Chatter sentences are unrelated to
the surgery ("let me adjust the light") and are marked ``is_chatter`` in the script,
so a relevance filter downstream has something to remove and a ground truth to be
scored against. :func:`plan_script` decides the sentences and when they start; the
audio module speaks them and reports their exact spoken length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .config import NarrationConfig
from .plan import VideoPlan

SYNONYMS: dict[str, tuple[str, ...]] = {
    "now": ("now", "next", "at this point", "okay, now", "so now", "here"),
    "we": ("we", "I"),
    "make": ("make", "create", "perform"),
    "main": ("main", "primary", "temporal clear corneal"),
    "keratome": ("keratome", "main incision knife", "blade"),
    "side": ("side port", "paracentesis", "secondary incision"),
    "ovd": ("viscoelastic", "the OVD", "dispersive viscoelastic", "cohesive viscoelastic"),
    "fill": ("fill", "reform", "deepen"),
    "chamber": ("anterior chamber", "chamber"),
    "rhexis": ("capsulorhexis", "rhexis", "continuous curvilinear capsulorhexis"),
    "start": ("start", "begin", "initiate"),
    "flap": ("flap", "capsular flap"),
    "cystotome": ("cystotome", "bent needle", "cystotome needle"),
    "forceps": ("forceps", "rhexis forceps", "Utrata forceps"),
    "bss": ("balanced salt solution", "BSS", "fluid"),
    "wave": ("fluid wave", "wave", "fluid front"),
    "nucleus": ("nucleus", "lens nucleus", "cataract"),
    "phaco": ("phaco", "phacoemulsification", "the phaco probe", "ultrasound"),
    "groove": ("groove", "trench", "central groove"),
    "crack": ("crack", "split", "divide"),
    "quadrants": ("quadrants", "fragments", "pieces", "heminuclei"),
    "cortex": ("cortex", "cortical material", "remaining cortex"),
    "ia": ("irrigation aspiration", "I/A", "the I/A handpiece"),
    "aspirate": ("aspirate", "remove", "strip"),
    "capsule": ("posterior capsule", "capsule", "capsular bag"),
    "polish": ("polish", "clean", "vacuum"),
    "iol": ("intraocular lens", "IOL", "lens implant", "foldable lens"),
    "inject": ("inject", "insert", "implant"),
    "bag": ("capsular bag", "bag"),
    "haptics": ("haptics", "haptic", "loops"),
    "hydrate": ("hydrate", "seal", "close"),
    "wounds": ("wounds", "incisions", "corneal wounds"),
    "antibiotic": ("antibiotic", "intracameral cefuroxime", "moxifloxacin"),
    "conjunctiva": ("conjunctiva", "conjunctival flap"),
    "open": ("open", "incise", "cut"),
    "limbus": ("limbus", "limbal area"),
    "scleral": ("scleral", "partial thickness scleral"),
    "dissect": ("dissect", "raise", "fashion"),
    "mmc": ("mitomycin C", "MMC", "mitomycin"),
    "sponges": ("sponges", "soaked sponges", "pledgets"),
    "apply": ("apply", "place", "put on"),
    "punch": ("punch", "Kelly punch", "Descemet punch"),
    "window": ("ostium", "sclerostomy", "window"),
    "iridectomy": ("peripheral iridectomy", "iridectomy", "PI"),
    "sutures": ("sutures", "releasable sutures", "nylon sutures"),
    "close": ("close", "suture", "secure"),
    "bleb": ("bleb", "filtering bleb"),
    "trocars": ("trocars", "cannulas", "ports"),
    "gauge": ("23-gauge", "25-gauge", "27-gauge"),
    "vitreous": ("vitreous", "vitreous gel", "core vitreous"),
    "cutter": ("cutter", "vitrector", "vitrectomy probe"),
    "periphery": ("periphery", "peripheral vitreous", "vitreous base"),
    "shave": ("shave", "trim", "clean up"),
    "membrane": ("membrane", "epiretinal membrane", "internal limiting membrane", "ILM"),
    "peel": ("peel", "grasp and peel", "lift"),
    "laser": ("laser", "endolaser", "laser spots"),
    "retina": ("retina", "retinal break", "periphery of the retina"),
    "air": ("air", "fluid air exchange"),
    "drain": ("drain", "aspirate", "remove"),
    "fluid": ("subretinal fluid", "fluid"),
    "oil": ("silicone oil", "gas", "tamponade"),
}

TEMPLATES: dict[int, tuple[str, ...]] = {
    1: ("{now} {we} {make} the {main} incision with the {keratome}",
        "{now} the {side}, and then the {main} incision",
        "{we} enter the {chamber} with the {keratome}"),
    2: ("{now} {we} {fill} the {chamber} with {ovd}",
        "injecting {ovd} to {fill} the {chamber}",
        "{we} put some {ovd} in to protect the endothelium"),
    3: ("{now} {we} {start} the {rhexis} with the {cystotome}",
        "{we} grab the {flap} with the {forceps} and complete the {rhexis}",
        "{rhexis} going around nicely, keep the {flap} folded over"),
    4: ("{now} hydrodissection with {bss} under the capsule",
        "{we} inject {bss} and watch the {wave} pass behind the {nucleus}",
        "hydrodissection, {we} rotate the {nucleus} to check it is free"),
    5: ("{now} {phaco}, {we} sculpt a {groove} in the {nucleus}",
        "{we} {crack} the {nucleus} into {quadrants}",
        "chopping and emulsifying the {quadrants} with {phaco}",
        "bring the {quadrants} to the center and emulsify them"),
    6: ("{now} {ia} to {aspirate} the {cortex}",
        "{we} {aspirate} the {cortex} all around with the {ia}",
        "{ia}, stripping the {cortex} from the {bag}"),
    7: ("{now} {we} {polish} the {capsule}",
        "a little {capsule} polishing to {polish} the remaining cells",
        "{we} {polish} the {capsule} gently with the cannula"),
    8: ("{now} {we} {inject} the {iol} into the {bag}",
        "the {iol} is unfolding, {we} dial the {haptics} into the {bag}",
        "{iol} going in, {haptics} in the {bag}"),
    9: ("{now} {we} remove the {ovd} with the {ia}",
        "{we} {aspirate} the {ovd} from behind the {iol}",
        "removing the remaining {ovd} from the {chamber}"),
    10: ("{now} {we} {hydrate} the {wounds} with {bss}",
         "{we} inject {antibiotic} and {hydrate} the {wounds}",
         "stromal hydration to {hydrate} the {wounds}, then {antibiotic}"),
    11: ("{now} {we} {open} the {conjunctiva} at the {limbus}",
         "fornix based peritomy, {we} {open} the {conjunctiva}",
         "{we} dissect the {conjunctiva} back and cauterize the vessels"),
    12: ("{now} {we} {dissect} a {scleral} flap",
         "{dissect} the {scleral} flap forward towards the {limbus}",
         "{we} {dissect} the flap into clear cornea with the crescent knife"),
    13: ("{now} {we} {apply} the {mmc} {sponges}",
         "{mmc} {sponges} under the {conjunctiva} for two minutes",
         "{we} {apply} {mmc} and then irrigate it away"),
    14: ("{now} a {side} to control the chamber",
         "{we} {make} a {side} with the {keratome}",
         "{side} first, so {we} can reform the {chamber} later"),
    15: ("{now} {we} {punch} the {window} under the flap",
         "making the {window} with the {punch}",
         "{we} remove a block of trabecular tissue with the {punch}"),
    16: ("{now} a {iridectomy} with the scissors",
         "{we} grasp the iris and cut a {iridectomy}",
         "{iridectomy} to prevent the iris from blocking the {window}"),
    17: ("{now} {we} {close} the flap with {sutures}",
         "placing {sutures} at the corners of the flap",
         "{we} tie the {sutures} and titrate the flow"),
    18: ("{now} {we} {close} the {conjunctiva} at the {limbus}",
         "closing the {conjunctiva} watertight over the {bleb}",
         "{we} check the {bleb} is formed and not leaking"),
    19: ("{now} {we} place the {gauge} {trocars}",
         "{trocars} in, infusion line is connected",
         "{we} insert the {trocars} through the pars plana"),
    20: ("{now} {we} start the core vitrectomy with the {cutter}",
         "removing the {vitreous} with the {cutter} and the light pipe",
         "core vitrectomy, {we} take out the central {vitreous}"),
    21: ("{now} {we} {shave} the {periphery}",
         "with indentation {we} {shave} the {periphery}",
         "peripheral vitrectomy, {shave} the {periphery} carefully"),
    22: ("{now} {we} {peel} the {membrane} with the forceps",
         "{we} find an edge and {peel} the {membrane}",
         "{membrane} peeling around the macula"),
    23: ("{now} {we} apply {laser} around the {retina}",
         "endolaser, {we} surround the {retina} with {laser}",
         "a few rows of {laser} to the {retina}"),
    24: ("{now} fluid air exchange, {we} {drain} the {fluid}",
         "{we} {drain} the {fluid} through the break under {air}",
         "{air} in, {drain} the {fluid} at the disc"),
    25: ("{now} {we} inject the {oil}",
         "filling the eye with {oil}",
         "{oil} going in through the infusion"),
    26: ("{now} {we} remove the {trocars}",
         "{trocars} out, checking the sclerotomies do not leak",
         "{we} take out the {trocars} and massage the sclerotomies"),
}

CHATTER: tuple[str, ...] = (
    "let me adjust the light",
    "can you turn the music down a little",
    "could I have the next instrument please",
    "suction please",
    "we are running a bit late today",
    "is the next patient ready",
    "can you move the microscope up slightly",
    "thank you",
    "focus a bit more please",
    "what time is it",
    "please lower the chair",
    "okay, that is good",
    "can someone answer that phone",
    "more irrigation please",
    "how is the patient doing",
    "let us wait a second",
)

# Surgeons name the instruments they hold ("... with the Rycroft cannula"). A phase sentence may end
# with one of these clauses naming tools that are in view while it is spoken, under the tool's
# class name, so text about a tool can be tied to its look (zero-shot instrument recognition).
TOOL_CLAUSES: tuple[str, ...] = (
    "{sentence}, using the {tools}",
    "{sentence}, with the {tools}",
    "{sentence}; the {tools} in view",
    "{sentence}, the {tools} in the eye",
)

_SLOT = re.compile(r"\{(\w+)\}")

# Acronyms are written as surgeons write them (the script and SRT hold the written form) but
# espeak-ng reads "ILM" as a word, so the speech engine gets them letter by letter.
SPOKEN_FORMS: dict[str, str] = {
    "ILM": "I L M", "OVD": "O V D", "IOL": "I O L", "BSS": "B S S", "MMC": "M M C", "PI": "P I",
    "I/A": "I and A", "ERM": "E R M",
}
_ACRONYM = re.compile(r"(?<![\w/])(" + "|".join(re.escape(k) for k in SPOKEN_FORMS) + r")(?![\w/])")


def spoken_form(text: str) -> str:
    """What the TTS engine is given for ``text``: acronyms spelled out."""
    return _ACRONYM.sub(lambda m: SPOKEN_FORMS[m.group(1)], text)


def fill_template(template: str, rng: np.random.Generator) -> str:
    def pick(m: re.Match) -> str:
        words = SYNONYMS[m.group(1)]
        return words[rng.integers(len(words))]

    text = _SLOT.sub(pick, template)
    return text[0].upper() + text[1:]


def tool_phrase(tools: list[str]) -> str:
    """How a surgeon names the tools in view: "Bonn forceps", "Bonn forceps and the Rycroft cannula"."""
    names = [t.replace("/", " and ") for t in tools]  # "irrigation/aspiration" is said, not written
    return " and the ".join(names)


def mention_tools(text: str, tools: list[str], rng: np.random.Generator) -> str:
    clause = TOOL_CLAUSES[rng.integers(len(TOOL_CLAUSES))]
    return clause.format(sentence=text, tools=tool_phrase(tools))


@dataclass
class Sentence:
    text: str
    phase_id: int  # the phase it is spoken in (chatter too: where it was said)
    is_chatter: bool
    earliest: float  # seconds: the sentence may start from here
    latest: float  # seconds: it must start before this or be dropped
    # The sentence without its tool clause: spoken instead when the full one would run past the video's end,
    # so a short video keeps its narration rather than losing the sentence.
    without_tools: str = ""


def plan_script(plan: VideoPlan, cfg: NarrationConfig, rng: np.random.Generator) -> list[Sentence]:
    """Candidate sentences per phase occurrence, in order; audio placement keeps them from overlapping."""
    out: list[Sentence] = []
    fps = plan.fps
    for index, seg in enumerate(plan.segments):
        start, end = seg.start / fps, seg.end / fps
        if rng.random() < cfg.chatter_prob:
            out.append(Sentence(CHATTER[rng.integers(len(CHATTER))].capitalize(), seg.phase_id, True,
                                start, start + 0.5 * (end - start)))
        if rng.random() < cfg.unnarrated_phase_prob:
            continue
        templates = TEMPLATES[seg.phase_id]
        order = rng.permutation(len(templates))
        n = 2 if (end - start > 8.0 and rng.random() < cfg.second_sentence_prob) else 1
        for k in range(n):
            text = base = fill_template(templates[order[k % len(templates)]], rng)
            lo = start + k * 0.5 * (end - start)
            hi = lo + 0.6 * (end - start) / n
            if rng.random() < cfg.tool_mention_prob:
                # Tools drawn while the sentence can be spoken (it lasts a few seconds past ``hi``).
                in_view = sorted({iv.tool for iv in plan.tools
                                  if iv.segment == index and iv.start / fps < hi + 3.0 and iv.end / fps > lo})
                if in_view:
                    named = [in_view[i] for i in rng.permutation(len(in_view))[:2]]
                    text = mention_tools(text, named, rng)
            out.append(Sentence(text, seg.phase_id, False, lo, hi, without_tools=base if text != base else ""))
    return out
