"""Answer normalisation of the official VQA evaluation (``vqaEval.py`` of the VQA API,
github.com/GT-Vision-Lab/VQA, PythonEvaluationTools, commit a013f00 of 2021).

Official accuracies are computed on normalised strings, so a model that answers "Two." where the
annotators wrote "2" is not penalised; a metric that skipped this would not be comparable with
the numbers the papers report. The tables below are the official script's data, reproduced as
they are (including keys such as "Im" that can never match because words are lower-cased
first); the functions are re-implementations of ``processPunctuation`` and
``processDigitArticle``.
"""

from __future__ import annotations

import re

CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've",
    "someone'dve": "someone'd've", "someonell": "someone'll", "someones": "someone's",
    "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've",
    "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
    "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all",
    "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've",
    "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}
"""Apostrophe-less spellings and their official spelling, applied word by word."""

MANUAL_MAP: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
"""Number words to digits (only these; "eleven" stays a word)."""

ARTICLES: tuple[str, ...] = ("a", "an", "the")

PUNCTUATION: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
    ",", "?", "!",
)
"""Removed or turned into a space (see ``process_punctuation``). The period, the apostrophe and
the colon are not in it: periods have their own rule, apostrophes belong to contractions."""

PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
r"""The official pattern as written. Its first group is a negative *lookahead* for the text
"<=" + digit (a typo for the lookbehind ``(?<!\d)``), which always holds in front of a ".", so
in effect it deletes every period not followed by a digit: "3.5" stays, "yes." -> "yes"."""

COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
"""A digit, a comma, a digit ("1,000"): when the text contains one, every punctuation mark is
deleted instead of being replaced by a space, so "1,000" -> "1000"."""

PERIOD_STRIP_COUNT = 32
"""The official call is ``periodStrip.sub("", outText, re.UNICODE)``: its third positional
argument is ``count``, so at most re.UNICODE == 32 periods are removed. Kept for exactness."""


def clean_whitespace(text: str) -> str:
    """Newlines and tabs to spaces, outer whitespace stripped: the official script does this to
    every answer, human or predicted, before anything else (even when it normalises nothing
    else)."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def process_punctuation(text: str) -> str:
    """``processPunctuation``: each mark of PUNCTUATION is deleted when the input has it next to
    a space (or has a digit-comma-digit anywhere), otherwise replaced by a space; then periods
    not followed by a digit are deleted. The conditions look at the input, not at the text as
    rewritten so far, exactly as the official loop does."""
    delete_all = COMMA_STRIP.search(text) is not None
    out = text
    for mark in PUNCTUATION:
        if delete_all or mark + " " in text or " " + mark in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return PERIOD_STRIP.sub("", out, count=PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """``processDigitArticle``: lower-case, split on whitespace, number words to digits, drop
    the articles, then spell contractions officially; words joined by single spaces."""
    words = [MANUAL_MAP.get(w, w) for w in text.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def normalize_answer(text: str) -> str:
    """The full official normalisation of one answer: whitespace, punctuation, then numbers,
    articles and contractions."""
    return process_digit_article(process_punctuation(clean_whitespace(text)))
