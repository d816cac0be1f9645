"""Reviewed word lists that turn recorded file names into labels (used by `names`).

Everything here was read against the real file names of the Debian packages the corpus
uses; a new package or version may need a line added, never a rule changed.

- `SYNONYMS`: abbreviations, misspellings and synonyms -> the plain word(s). A key of
  three letters or more may also be a piece of a compound (`empsmall` = emp + small).
- `CODED_NAMES`: names whose digits are part of the name (`f16_1.wav` is an F-16).
- `MODIFIERS`: size, level, speed and manner words. They stay in the phrase, in front
  ("small explosion"), and are never a label on their own.
- `COMPOUNDS`: two-word nouns kept together as one label, because either word alone
  would name another sound ("machine gun" is not a machine, a fire truck not a fire).
- `HEADS`, `HEAD_LAST`, `FOLDER_HEADS`: which word a name is about, and folders that
  name it ("explosions/small.wav" is a small explosion).
- `PLACES`: LinCity-NG names its sounds after the map tile they play for
  (`sounds/sounds.xml` groups them by tile), so each name maps to what that place
  sounds like: a phrase and its labels.
- `VOCABULARY`: plain words known from the corpus's labels and the dictionaries, with
  no compounds in it. A longer name word outside it is split into vocabulary words
  (`carhorn` -> car horn); the tests hold examples of both.
"""

from __future__ import annotations

# Game and library prefixes, never labels when a name starts with them.
PREFIXES = frozenset(
    "default env sounds sound snd sfx wp foley fx amb tnt xpanes doors env_sounds".split()
)
# Filler, never labels or phrase words.
FILLER = frozenset(
    "the a an of and with in on no to loop loops looped left right l r mono stereo "
    "short long var alt new old final edit mix version v take sounds sound stuff".split()
)

# Abbreviations, misspellings and synonyms -> the plain word(s).
SYNONYMS: dict[str, str] = {
    "footstep": "footstep",
    "footsteps": "footstep",
    "foot": "footstep",
    "step": "footstep",
    "steps": "footstep",
    "walk": "footstep",
    "swimstep": "swimming stroke",
    "expl": "explosion",
    "exp": "explosion",
    "explosions": "explosion",
    "doors": "door",
    "engines": "engine",
    "weapons": "weapon",
    "impacts": "impact",
    "explode": "explosion",
    "explo": "explosion",
    "trafic": "traffic",
    "croud": "crowd",
    "shotty": "shotgun",
    "shotgn": "shotgun",
    "sg": "shotgun",
    "gren": "grenade",
    "mg": "machine gun",
    "minigun": "machine gun",
    "wpn": "weapon",
    "heli": "helicopter",
    "chopper": "helicopter",
    "apache": "helicopter",
    "cessna": "propeller plane",
    "para": "parachute",
    "engn": "engine",
    "eng": "engine",
    "amb": "ambience",
    "ambient": "ambience",
    "ambiance": "ambience",
    "wnd": "wind",
    "wtr": "water",
    "bg": "background",
    "dmg": "damage",
    "hit": "hit",
    "bhit": "hit",
    "impct": "impact",
    "nightime": "night",
    "nighttime": "night",
    "day": "daytime",
    "desertday": "desert daytime",
    "sunny": "sunny",
    "policecar": "police car",
    "firetruck": "fire truck",
    "oceanwaves": "ocean waves",
    "nightcrickets": "night crickets",
    "cricket": "crickets",
    "cicada": "cicadas",
    "cycadas": "cicadas",
    "breakglass": "glass breaking",
    "doorbell": "doorbell",
    "extinguish": "extinguishing",
    "flint": "flint",
    "dig": "digging",
    "dug": "digging",
    "swish": "swish",
    "woosh": "whoosh",
    "sheathe": "sheathing",
    "draw": "drawing",
    "rtn": "return",
    "sw": "sword",
    "axe": "axe",
    "cudgel": "club",
    "harvest": "harvesting",
    "chop": "chopping",
    "saber": "sabre",
    "kaboom": "explosion",
    "boom": "explosion",
    "zap": "zap",
    "emp": "zap",
    "spl": "splash",
    "waterfall": "waterfall",
    "droplets": "drips",
    "drip": "drips",
    "grind": "grinding",
    "bubble": "bubbling",
    "beamup": "teleport",
    "lockon": "lock-on beep",
    "activmag": "activate magnetic",
    "goldspin": "spinning wheel",
    "xlarge": "very large",
    "med": "medium",
    "ox": "oxen",
    "tv": "television",
    "aa": "anti-aircraft",
    "fontain": "fountain",
    "dbl": "double",
    "conc": "concrete",
}
# Names whose digits belong to the name: aircraft types.
CODED_NAMES: dict[str, str] = {"f16": "fighter jet", "f18": "fighter jet", "t38": "jet"}
MODIFIERS = frozenset(
    "high low large small medium very big huge tiny little mid fast slow quick empty full "
    "heavy light strong weak loud quiet soft hard distant busy single double triple "
    "magnetic mini".split()
)
COMPOUNDS = frozenset(
    (
        "machine gun",
        "machine gunner",
        "fire truck",
        "fire station",
        "coal mine",
        "ore mine",
        "power station",
        "fighter jet",
        "bench saw",
        "spinning wheel",
        "wind turbine",
    )
)
# Head nouns that come first among the labels when they appear in a name.
HEADS = frozenset(
    "footstep explosion shot gunfire door engine rain wind thunder fire water splash "
    "crickets bird birds owl wolf dog cow sheep horse rooster chicken helicopter train "
    "car traffic crowd waterfall creek river ocean waves drips whoosh impact hit crash "
    "glass sword knife axe hammer saw scythe horn".split()
)
# Heads that read better after their modifier: "snow footstep", "wooden door".
HEAD_LAST = frozenset(("footstep", "door", "engine", "explosion", "impact", "crowd"))
# Folders whose name is the head of the names inside ("shoot/laser.wav": a laser shot).
FOLDER_HEADS: dict[str, str] = {"shoot": "shot", "shield": "shield"}

# LinCity-NG tile -> what it sounds like | its labels (head first). Where the tile makes
# an everyday sound, that sound (a mill, traffic, a power station's hum); where it is a
# place whose recording is its background, "<place> ambience", one label.
_PLACES = """
blacksmith | blacksmith hammering | hammering, blacksmith
build | construction | construction
coalmine | coal mine | coal mine
commune | village ambience | village ambience
dirttrack | dirt road ambience | dirt road ambience
farm | farm ambience | farm ambience
firestation | fire station ambience | fire station ambience
firewasteland | fire | fire
green | nature ambience | nature ambience
harbor | harbour ambience | harbour ambience
health | hospital ambience | hospital ambience
industryhigh | heavy industry machinery | machinery, industry
industrylight | light industry machinery | machinery, industry
marketempty | empty market | market
marketlow | quiet market | market
marketmed | market crowd | crowd, market
marketfull | busy market crowd | crowd, market
monument | monument ambience | monument ambience
monumentconstruction | construction | construction
oremine | ore mine | ore mine
organicfarm | farm ambience | farm ambience
parklandlake | lake ambience | lake ambience
parklandplane | park ambience | park ambience
powercoalempty | quiet power station hum | hum, power station
powercoallow | low power station hum | hum, power station
powercoalmed | power station hum | hum, power station
powercoalfull | loud power station hum | hum, power station
powerline | electric buzz | buzz
powersolar | solar power station hum | hum, power station
railtrain | train | train
raze | demolition | demolition
recycle | recycling machinery | machinery, recycling
residentialhigh | busy neighbourhood ambience | neighbourhood ambience
residentialmed | neighbourhood ambience | neighbourhood ambience
residentiallow | quiet neighbourhood ambience | neighbourhood ambience
residentiallowlow | quiet neighbourhood ambience | neighbourhood ambience
school | school ambience | school ambience
shanty | shanty town ambience | shanty town ambience
substation | electric hum | hum
substationon | electric switch | switch
substationoff | electric switch | switch
tip | landfill ambience | landfill ambience
trafichigh | heavy traffic | traffic
traficlow | light traffic | traffic
university | university ambience | university ambience
windmill | windmill | windmill
windmillhtech | wind turbine | wind turbine
"""


def _places(table: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    rows = (line.split("|") for line in table.strip().splitlines())
    return {k.strip(): (p.strip(), tuple(x.strip() for x in ls.split(","))) for k, p, ls in rows}


PLACES = _places(_PLACES)


# Plain words of the corpus's labels (no compounds), for telling a word from a compound;
# the dictionaries' own words join them below.
_CORPUS_WORDS = frozenset(
    """
accordion acid action activate activated active adjutant aeoline aesculapian air aircraft
airplane airship alarm albatross alien all ambience ammo animal anklet antlion anvil apache
apollo appear apple arc archer archmage arctic arm armor arrow artillery attach attack axe
background badger bagpipes ball balloons bar bark base bass bat bathyscape bats battery battle
battlemage battleship beam bear bee beer bees beetle behemoth being bell belly bench bicycle
big bird birds bison blackbird blackcat blacksmith blackwood blade blast bleed blister block
blood blow boar body boing bolt bolter bolts bomb bombing bombs booby book boomerang boot boots
bottle bounce bowling brake break breakable breaker breaking breaks bridge broken bubble
bubblegum bubbles bubbling build building bull bullet burn burning bush buzz bzap bzzt cabin
calf call camel camera campus candy cannon cannons cap capture car caribou carpet cars cart
carts cat catapult catch cavalry cave cello cessna chaingun chalkboard changu chaos charge chat
chatter cheburashka checkered cheering chef chest chicken chimp chimpanzee chinchilla chirp
chitter choppy christmas cicadas circuit circus city clang clank clarinet claw cleaner click
clock close closed cloth clown club coal coin coins collapse collectable commune console
construction cool core country cow cows coyote cracky crane crash crashing crazy creak create
creek crickets critical crouch crow crowd crumbly crunch cuckoo cuica cut cymbals daemon damage
dark daytime dead deadman death debris deceleration deep deer defense desert device dice die
diesel digging dirt disco disembark dispersion display distant diving doe dog dogmatix doll
dolphin donkey door doorbell double down dragon drake drawing dreydl drip drive dromedary
droning drop drum drumming drums duck dulzaina dumb dunno eagle ear earth easel eat echo
echoing egg electric electro elephant elevate emelya empty emu end energy engine erhu error
evil excavator exotic explosion extinguishing extra factory fadeout fail failure fall falling
farm fast faucet female fencegate ferret field fight fighter fighting finish fire fireball
firebird fireworks fish fizzle flag flamer flamingo flap flare flashbang flechette flesh flint
flir flump flush fly flyby flying foal football footstep force forcefield forest fountain fowl
fox freeze freshmen frog frogs full funny furnace galloping gamba game gamekeeper gander gas
gate gauss gear gem generator genie geologist ghost giant gift gimmel giraffe glass gloop glove
goal goat goblin gold golden golem goo good goose gorilla grab grand grass grasshopper grave
gravel greatblue green grenade grind grinding grommet ground grouse growl guard guided guinea
guitar gull gun gunner gunpowder hammer hammering hamster hand hang happy harbor harbour hard
harmonica harp harvesting hat hawk hay head heal health heartbeat heavy hedgehog helicopter
hell hen heron high highlight hippopotamus hit hockey hook horn hornet horror horse horseman
horses hospital hot hover huge hum human hurt hyena hyperspace ice idle igloo ignite iguana
immediate impact impulse indoor industrial industry infantry inflate initiate inn insert inside
invention iora iotshin irgoggles iron item itemuse ivasyk jack jaguar jar jerboa jet joker jug
jump jumppad just kamikaze kazoo kettle keyboard kiln kinder kite klaxon knife koala ladybug
lake lamb land lander landfill landing large lark laser lasers laugh launch launched launcher
lava leather leaves lens level life light lightning lights line linoleum lion little lobby
locked locomotive loot loud low lukoje lunchbox lute lynx machine machinery magic magnet
magnifying maille male mallet man mana maracas marching market massacre meal medieval medikit
medium melee men message metal meteor mid mill minarett mine minecart mini minotaur missile
moderate monkey monument moo moose morning mortar mosquito moth motor mouse move movement
moving mud mummy musket muskets nail napalm natural nature naval necklace needler neighbourhood
net newspaper newt ney night ninja nitro node noise note notify nuclear nuke nun object oboe
obstruction occupied ocean oddly ode oedephon off ole open orca ore organ organic origami
original otter out outdoor outside overspeed owl oxen page pain paint panda paper parachute
parkland pelican pen penguin pheasant piano pickup pig pin ping pipe pishik pistol place placed
plane plasma play player plopp plunger pneumatic police political popup porcupine portal potion
pottery power powering powerup primary prince princess private prod propeller pull pump pupil
python quadrocopter quail quake quarter quena quetzal quilt quiz rabbit rabel raccoon race
radiation radio rail rain ratchet raven ray raze recorder recycle red regenerate reload remove
required residential respawn return revup rhinoceros ricochet rifle rift ripped river road
robot rock rocket rockets rocking rocks roll rolled rooster rope round rozhok rubber rubberduck
rumble rustle sabre sad sailorboy sand santahat saw sawing sawmill saxophone school schooler
scientific scissors scored scream screaming screech screenshot scythe sea seagull secondary
security seesaw server shaken shaman shanty sharpening sheathing sheep shell shield shin ship
shock shockwave shoot shot shotgun show shower shutdown signal singe single siren site skate
skateboard skeleton ski skid slice slide slime slit small smith smoke snail snake snappy snarl
sniper snow soft solar sonar sound space spaceship sparks sparrow spawn spearman spider spikes
spin spinning splash splat splatter splosh spoons sports squeezebox squirrel stab staff stag
stairs stall stand standing star start static station steam steel stickfighter sting stone
stonecutter stonemason stop stork storm strafing strike stroke strong sub submarine substation
success successful summon summoner sunny surprise swamp swap swatter swimming swing swish
switch switched swoosh sword swordman swords takeoff taking talkie tank taser tavern tech
technician teleport teleporter territory then throw thrower thud thunder thwack tick tiger tile
time timpani tink tip toaster toilet tonatiuh tool tools toolsmith top topshuur torpedo tower
town tracer track tractor traffic train transit trash tree triple truck trumpet tucan turbine
turkey turn turning turtle twitter typewriter ufo ugh ugv ukulele umbrella umka under
underwater unicycle university urchin ursula vacuum valkyrie vapour vase vehicle ventilation
victory village violin volley volleyball vulture wagon wakawaka walkie wall wallaby warcry
warrior washing washint waste wasteland watch water watercolor waterfall waves weak weapon
weaver weaving wee weevil whale wheel whirligig whirling whistle white whizz whoosh wicker
wilhelm wind window wine wolf wood woodcutting wooden work worker worm wormhole wyvern xanthia
xbox xing xun xylophone yaga yak yangqin yeti yinyang yobel youhikko yoyo yueqin zebra zhaleyka
zipline zipper zither zoetrope zombie zozulka zurna
""".split()
)
_DICTIONARY_WORDS = " ".join(
    [*SYNONYMS.values(), *CODED_NAMES.values(), *(phrase for phrase, _ in PLACES.values())]
)
VOCABULARY = _CORPUS_WORDS | MODIFIERS | HEADS | frozenset(_DICTIONARY_WORDS.split())
