"""Surface forms for the 80 COCO object classes, used to find the objects an answer mentions (CHAIR).

Each class lists singular forms; plurals are derived by `plural()` (irregular ones are listed in `IRREGULAR_PLURALS`
or directly in the table). Words that usually mean something else are left out on purpose: "orange" is listed (it
is a COCO class) although it is also a colour, because CHAIR's literature counts it; "glass" (a material and a
drinking glass), "bat" (also an animal), "meter", "cook", and sport names
("baseball", "football": "playing baseball" names no ball) are not. A project can pass its own table (`--synonyms`).
"""

from __future__ import annotations


COCO_SYNONYMS: dict[str, list[str]] = {
    "person": [
        "person",
        "people",
        "man",
        "woman",
        "men",
        "women",
        "boy",
        "girl",
        "child",
        "children",
        "kid",
        "baby",
        "guy",
        "lady",
        "gentleman",
        "adult",
        "teenager",
        "toddler",
        "player",
        "skier",
        "snowboarder",
        "surfer",
        "skateboarder",
        "rider",
        "pedestrian",
        "worker",
        "chef",
        "officer",
        "policeman",
        "soldier",
        "tourist",
        "passenger",
        "spectator",
        "catcher",
        "umpire",
        "biker",
        "cyclist",
    ],
    "bicycle": ["bicycle", "bike"],
    "car": ["car", "automobile", "sedan", "taxi", "cab", "suv", "van", "jeep", "minivan"],
    "motorcycle": ["motorcycle", "motorbike", "motor bike", "scooter", "moped", "dirt bike"],
    "airplane": ["airplane", "aeroplane", "plane", "jet", "airliner", "aircraft"],
    "bus": ["bus", "double decker", "double-decker bus", "minibus", "school bus"],
    "train": ["train", "locomotive", "tram", "subway", "railcar"],
    "truck": ["truck", "lorry", "pickup truck", "fire truck", "firetruck", "dump truck"],
    "boat": ["boat", "ship", "yacht", "sailboat", "canoe", "kayak", "ferry", "raft", "rowboat", "vessel"],
    "traffic light": ["traffic light", "traffic signal", "stop light", "stoplight"],
    "fire hydrant": ["fire hydrant", "hydrant"],
    "stop sign": ["stop sign"],
    "parking meter": ["parking meter"],
    "bench": ["bench"],
    "bird": ["bird", "pigeon", "seagull", "gull", "duck", "goose", "parrot", "crow", "sparrow", "owl", "swan"],
    "cat": ["cat", "kitten", "kitty"],
    "dog": ["dog", "puppy", "pup", "doggy"],
    "horse": ["horse", "pony", "foal", "stallion"],
    "sheep": ["sheep", "lamb"],
    "cow": ["cow", "cattle", "bull", "calf", "ox", "oxen"],
    "elephant": ["elephant"],
    "bear": ["bear", "grizzly", "polar bear"],
    "zebra": ["zebra"],
    "giraffe": ["giraffe"],
    "backpack": ["backpack", "rucksack", "knapsack"],
    "umbrella": ["umbrella", "parasol"],
    "handbag": ["handbag", "purse", "hand bag"],
    "tie": ["tie", "necktie", "bow tie"],
    "suitcase": ["suitcase", "luggage", "suit case"],
    "frisbee": ["frisbee", "flying disc"],
    "skis": ["skis", "ski"],
    "snowboard": ["snowboard"],
    "sports ball": ["sports ball", "ball", "soccer ball", "tennis ball", "beach ball"],
    "kite": ["kite"],
    "baseball bat": ["baseball bat"],
    "baseball glove": ["baseball glove", "baseball mitt", "mitt"],
    "skateboard": ["skateboard", "skate board"],
    "surfboard": ["surfboard", "surf board"],
    "tennis racket": ["tennis racket", "racket", "racquet", "tennis racquet"],
    "bottle": ["bottle"],
    "wine glass": ["wine glass", "wineglass"],
    "cup": ["cup", "mug", "teacup", "coffee cup"],
    "fork": ["fork"],
    "knife": ["knife"],
    "spoon": ["spoon"],
    "bowl": ["bowl"],
    "banana": ["banana"],
    "apple": ["apple"],
    "sandwich": ["sandwich", "burger", "hamburger"],
    "orange": ["orange"],
    "broccoli": ["broccoli"],
    "carrot": ["carrot"],
    "hot dog": ["hot dog", "hotdog"],
    "pizza": ["pizza"],
    "donut": ["donut", "doughnut"],
    "cake": ["cake", "cupcake", "cheesecake"],
    "chair": ["chair", "stool", "armchair", "highchair"],
    "couch": ["couch", "sofa", "loveseat"],
    "potted plant": ["potted plant", "houseplant", "house plant", "plant pot", "flowerpot", "flower pot"],
    "bed": ["bed"],
    "dining table": ["dining table", "table", "kitchen table", "coffee table"],
    "toilet": ["toilet", "urinal", "commode"],
    "tv": ["tv", "television", "tv screen", "monitor"],
    "laptop": ["laptop", "notebook computer", "computer"],
    "mouse": ["computer mouse", "mouse"],
    "remote": ["remote", "remote control"],
    "keyboard": ["keyboard"],
    "cell phone": ["cell phone", "cellphone", "mobile phone", "phone", "smartphone", "iphone"],
    "microwave": ["microwave", "microwave oven"],
    "oven": ["oven", "stove"],
    "toaster": ["toaster"],
    "sink": ["sink"],
    "refrigerator": ["refrigerator", "fridge"],
    "book": ["book", "novel"],
    "clock": ["clock"],
    "vase": ["vase"],
    "scissors": ["scissors"],
    "teddy bear": ["teddy bear", "teddybear", "stuffed animal", "teddy"],
    "hair drier": ["hair drier", "hair dryer", "hairdryer", "blow dryer"],
    "toothbrush": ["toothbrush", "tooth brush"],
}

# Plurals that no rule derives. Forms that are already plural (people, skis, scissors) have none.
IRREGULAR_PLURALS = {
    "person": "persons",
    "man": "men",
    "woman": "women",
    "child": "children",
    "gentleman": "gentlemen",
    "policeman": "policemen",
    "knife": "knives",
    "mouse": "mice",
    "computer mouse": "computer mice",
    "sheep": "sheep",
    "ox": "oxen",
    "goose": "geese",
    "calf": "calves",
    "broccoli": "broccoli",
    "luggage": "luggage",
    "cattle": "cattle",
}
_NO_PLURAL = {"people", "men", "women", "children", "oxen", "skis", "scissors", "cattle", "luggage", "broccoli"}


def plural(form: str) -> str | None:
    """English plural of `form` (its last word), or None for forms that are already plural or uncountable."""
    if form in _NO_PLURAL:
        return None
    if form in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[form]
    head, _, last = form.rpartition(" ")
    if last.endswith(("s", "sh", "ch", "x", "z")):
        last = last + "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        last = last[:-1] + "ies"
    else:
        last = last + "s"
    return f"{head} {last}" if head else last


def expand(table: dict[str, list[str]]) -> dict[str, str]:
    """{surface form (singular and plural, lower case): class}. A form listed under two classes is an error."""
    forms: dict[str, str] = {}
    for cls, surface_forms in table.items():
        for form in [cls, *surface_forms]:
            form = " ".join(form.lower().split())
            for variant in (form, plural(form)):
                if variant is None:
                    continue
                owner = forms.setdefault(variant, cls)
                if owner != cls:
                    raise ValueError(f"synonym {variant!r} is listed under both {owner!r} and {cls!r}")
    return forms
