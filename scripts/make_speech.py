#!/usr/bin/env python
"""Generate ffasr's synthetic speech evaluation set (and the small demo in examples/).

    python scripts/make_speech.py                       # -> benchmarks/data/
    python scripts/make_speech.py --out /tmp/speech     # elsewhere
    python scripts/make_speech.py --examples examples/  # the small committed demo
    python scripts/make_speech.py --force               # re-render clips that already exist
    python scripts/make_speech.py --no-eval             # skip the base tiny.en table

Everything is deterministic: fixed TTS seeds, fixed noise seeds, hand-written sentences.
Clips that already exist are not rendered again (unless --force, or unless clips/manifest.json says
they were rendered from another text or voice); JSONL files are always rewritten (they are cheap). At the end the base tiny.en model transcribes every clip and a table shows, per
file, the clip count, WER and term recall (for soundalike.jsonl: how often the term wrongly appears).

Voices:
  * training clips: hibari "heart", speed 1.0, clean; and the same dialogs in espeak-ng en-us
    (train_*_espeak.jsonl: a user in a voice nothing was tuned on);
  * term test clips (terms_*.jsonl): hibari with other speed / pitch / noise (three "voices",
    one per test sentence, rotating), and espeak-ng (terms_*_espeak.jsonl, same sentences);
  * soundalike / general clips: hibari, mixed voices.
Names are spoken with their usual pronunciation (forced with hibari's [Word](/phonemes/) syntax,
and a respelling for espeak-ng); the default G2P guesses are often wrong for rare names.

All audio: 16 kHz mono 16-bit PCM WAV. Paths in JSONL are relative to the JSONL file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SR = 16000
ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------------------------
# Terms. hibari phonemes (misaki alphabet) and an espeak-ng respelling of the usual pronunciation.
# All were checked: base tiny.en misses them in most hibari sentences (see benchmarks/data/README.md).
# --------------------------------------------------------------------------------------------
PRON = {
    # dev terms (used for tuning)
    "PostgreSQL": ("pˈOstɡɹɛs kjˌuˈɛl", "post gress Q L"),
    "Xochitl": ("sˈOʧiTᵊl", "so cheetle"),
    "Tadeusz": ("tɑdˈɛuʃ", "tah deh oosh"),
    "Nguyen": ("wˈɪn", "win"),
    "Nginx": ("ˌɛnʤɪnˈɛks", "engine ex"),
    "Saoirse": ("sˈɜɹʃə", "sersha"),
    # second dev slice (also used for tuning: the first one saturated at 100 %)
    "Aoife": ("ˈifə", "eefa"),
    "Caoimhe": ("kˈivə", "keeva"),
    "Przemek": ("pʃˈɛmɛk", "pshemek"),
    "Grzegorz": ("ɡʒˈɛɡɔʃ", "gzhegosh"),
    # third dev slice (third session: dev and dev2 both saturated at 100 % on hibari voices)
    "Oisín": ("ʊʃˈin", "uh sheen"),
    "Zbigniew": ("zbˈiɡnjɛf", "zbig nyef"),
    "Janáček": ("jˈɑnɑʧɛk", "yah nah chek"),
    "Ceph": ("sˈɛf", "seff"),
    "Ciarán": ("kˈiɹɔn", "keer awn"),
    # held-out terms (never used for tuning)
    "Niamh": ("nˈiv", "neeve"),
    "Wojciech": ("vˈOiʧɛk", "voy chek"),
    "Memcached": ("mˈɛmkæʃt", "mem cashed"),
    "Dvořák": ("dəvˈɔɹʒɑk", "dvor zhahk"),
    # fourth dev slice (fifth session: dev and dev2 at 100 %, dev3 nearly; a fresh slice to tune on)
    "Tadhg": ("tˈIɡ", "tige"),
    "Gráinne": ("ɡɹˈɔnjə", "grawn ya"),
    "Łukasz": ("wˈukɑʃ", "woo kash"),
    "Cilium": ("sˈɪliəm", "silly um"),
    "Dearbhla": ("dˈɛɹvlə", "derv la"),
    "Thibault": ("tibˈO", "tee bow"),
    # second held-out slice (fifth session, fixed before any tuning; never tuned on)
    "Pádraig": ("pˈɔdɹɪɡ", "paw drig"),
    "Chidi": ("ʧˈidi", "chee dee"),
    "Zabbix": ("zˈæbɪks", "zab icks"),
    "Yevgeny": ("jɛvɡˈɛni", "yev gennie"),
    "Fionnuala": ("fɪnˈulə", "fin oola"),
    "Nnamdi": ("nˈɑmdi", "nahm dee"),
    # fifth dev slice (sixth session: the earlier slices at 94-100 %; fixed before any tuning,
    # kept terms assigned to dev5 / heldout3 by a seeded coin)
    "Cathal": ("kˈɑhəl", "ka hal"),
    "Róisín": ("ɹOʃˈin", "ro sheen"),
    "Wiesław": ("vjˈɛswɑf", "vyes wahf"),
    "Ailbhe": ("ˈælvə", "alva"),
    "Bożena": ("bɔʒˈɛnɑ", "bo zhen na"),
    "Oluwaseun": ("ˌOluwɑʃˈɛun", "oh loo wah sheh oon"),
    "Odhrán": ("ˈOɹɔn", "oh rawn"),
    "Velero": ("vəlˈɛɹO", "veh lair oh"),
    "Bláithín": ("blɔhˈin", "blaw heen"),
    "Szczepan": ("ʃʧˈɛpɑn", "shcheh pan"),
    # third held-out slice (sixth session, fixed before any tuning; never tuned on)
    "Krzysztof": ("kʃˈɪʃtɔf", "kshish toff"),
    "Małgorzata": ("mˌWɡɔʒˈɑtɑ", "mow go zhah ta"),
    "Tekton": ("tˈɛktɔn", "tek ton"),
    "Ngozi": ("ŋɡˈOzi", "n go zee"),
    "Sadhbh": ("sˈIv", "sive"),
    "Jędrzej": ("jˈɛnʤɛj", "yen jay"),
    "Thandiwe": ("tɑndˈiwA", "tan dee way"),
    "Clodagh": ("klˈOdə", "clo da"),
    # fourth held-out slice (twelfth session, fixed before any run with the learner; never tuned on):
    # candidates base tiny.en missed in 8 of 8 hibari sentences (Kubernetes and Siobhan, with these
    # pronunciations, it got right in 8 of 8, so they are not here)
    "Sorcha": ("sˈɜɹkə", "sur ka"),
    "Jacek": ("jˈɑtsɛk", "yah tsek"),
    "Uchenna": ("uʧˈɛnə", "oo chen na"),
    "Szymon": ("ʃˈɪmɔn", "shim on"),
    "Grażyna": ("ɡɹɑʒˈɪnɑ", "grah zhin ah"),
    "Tendai": ("tˈɛndI", "ten dye"),
    "Fluentd": ("flˈuənt dˈi", "floo ent dee"),
    "Knative": ("kˈA nˈAtɪv", "kay native"),
    "Qiang": ("ʧjˈɑŋ", "chyahng"),
    "Xinyi": ("ʃˈɪnji", "shin yee"),
    # fifth held-out slice (seventeenth session, fixed before any run with the learner; never tuned on):
    # the 14 of 25 candidates base tiny.en missed in 8 of 8 hibari sentences
    "Aisling": ("ˈæʃlɪŋ", "ash ling"),
    "Gearóid": ("ɡəɹˈOd", "ga rode"),
    "Laoise": ("lˈiʃə", "lee sha"),
    "Nkechi": ("ŋkˈɛʧi", "n keh chee"),
    "Bartłomiej": ("bɑɹtwˈɔmjɛj", "bart woh myay"),
    "Mateusz": ("mɑtˈɛuʃ", "mah teh oosh"),
    "Gitea": ("ɡɪtˈi", "git tee"),
    "Caoilfhionn": ("kˈilɪn", "kee lin"),
    "Ngaire": ("nˈIɹi", "nye ree"),
    "Wawrzyniec": ("vˈɑvʒɪnjɛʦ", "vahv zhin yets"),
    "Adaeze": ("ɑdˈɑɛzɛ", "ah dah eh zeh"),
    "Iñaki": ("injˈɑki", "ee nyah kee"),
    "Kyverno": ("kIvˈɜɹnO", "kai ver no"),
    "Kubeflow": ("kjˈub flˈO", "cube flow"),
}
DEV_TERMS = ["PostgreSQL", "Xochitl", "Tadeusz", "Nguyen", "Nginx", "Saoirse"]
DEV2_TERMS = ["Aoife", "Caoimhe", "Przemek", "Grzegorz"]
DEV3_TERMS = ["Oisín", "Zbigniew", "Janáček", "Ceph", "Ciarán"]
HELDOUT_TERMS = ["Niamh", "Wojciech", "Memcached", "Dvořák"]
DEV4_TERMS = ["Tadhg", "Gráinne", "Łukasz", "Cilium", "Dearbhla", "Thibault"]
HELDOUT2_TERMS = ["Pádraig", "Chidi", "Zabbix", "Yevgeny", "Fionnuala", "Nnamdi"]
DEV5_TERMS = ["Cathal", "Róisín", "Wiesław", "Ailbhe", "Bożena", "Oluwaseun", "Odhrán", "Velero", "Bláithín",
              "Szczepan"]
HELDOUT3_TERMS = ["Krzysztof", "Małgorzata", "Tekton", "Ngozi", "Sadhbh", "Jędrzej", "Thandiwe", "Clodagh"]
HELDOUT4_TERMS = ["Sorcha", "Jacek", "Uchenna", "Szymon", "Grażyna", "Tendai", "Fluentd", "Knative", "Qiang", "Xinyi"]
HELDOUT5_TERMS = [
    "Aisling", "Gearóid", "Laoise", "Nkechi", "Bartłomiej", "Mateusz", "Gitea",
    "Caoilfhionn", "Ngaire", "Wawrzyniec", "Adaeze", "Iñaki", "Kyverno", "Kubeflow",
]

# Per term: 4 training sentences (typed corrections) then 3 test sentences (never learned from).
SENTENCES = {
    "PostgreSQL": [
        "The reporting queries run much faster on PostgreSQL now.",
        "We are migrating the old customer tables to PostgreSQL.",
        "PostgreSQL refused the connection after the upgrade.",
        "Our team spent the whole morning tuning PostgreSQL indexes.",
        # test
        "Please back up the PostgreSQL database before Friday.",
        "I think PostgreSQL handles the JSON columns better.",
        "Which version of PostgreSQL is running on the staging server?",
    ],
    "Xochitl": [
        "Xochitl will present the design review on Monday.",
        "I forwarded the invoice to Xochitl this morning.",
        "Did Xochitl already book the hotel for the trip?",
        "The birthday cake was baked by Xochitl and her mother.",
        # test
        "Ask Xochitl whether the new badges have arrived.",
        "Xochitl is moving to the marketing team next month.",
        "We should thank Xochitl for organizing the picnic.",
    ],
    "Tadeusz": [
        "Tadeusz booked the meeting room for the whole afternoon.",
        "Send the draft contract to Tadeusz for a final look.",
        "My neighbor Tadeusz plays the violin every evening.",
        "Could you ask Tadeusz to water the plants this weekend?",
        # test
        "I think Tadeusz already fixed the printer upstairs.",
        "Tadeusz is picking us up at the train station.",
        "The quarterly report still needs a signature from Tadeusz.",
    ],
    "Nguyen": [
        "Doctor Nguyen will see you at half past three.",
        "Nguyen signed off on the budget yesterday.",
        "The flowers were delivered to Mister Nguyen by mistake.",
        "Our landlord, Missus Nguyen, is fixing the heater today.",
        # test
        "Please copy Linh Nguyen on the next email.",
        "Nguyen won the chess tournament for the third year.",
        "I have a dentist appointment with Doctor Nguyen on Tuesday.",
    ],
    "Nginx": [
        "Nginx returns a gateway error for every request.",
        "We put Nginx in front of the old web server.",
        "The certificate on the Nginx proxy expires next week.",
        "Can you restart Nginx after lunch?",
        # test
        "Reload the Nginx config after you change the port.",
        "Nginx is serving the static files much faster now.",
        "I found the timeout setting in the Nginx logs.",
    ],
    "Saoirse": [
        "Saoirse found a cheaper flight to Lisbon.",
        "We are throwing a surprise party for Saoirse tonight.",
        "Saoirse and I walked the dog along the river.",
        "The last slice of pie is for Saoirse.",
        # test
        "My cousin Saoirse just started at the hospital.",
        "Saoirse lent me her camera for the weekend.",
        "Could you pass these notes on to Saoirse?",
    ],
    "Aoife": [
        "Aoife is coming over for dinner on Friday.",
        "The best slides in the deck were made by Aoife.",
        "I borrowed a ladder from Aoife next door.",
        "Aoife found a great apartment near the river.",
        # test
        "Please send the invoice to Aoife in accounting.",
        "Aoife plays the violin in a local orchestra.",
        "We should invite Aoife to the hiking trip.",
    ],
    "Caoimhe": [
        "Caoimhe is running the quarterly planning session.",
        "I asked Caoimhe to water the plants while I am away.",
        "The new budget was approved by Caoimhe yesterday.",
        "We are all going to Caoimhe's birthday dinner.",
        # test
        "Caoimhe will call you back after lunch.",
        "Could you give this folder to Caoimhe?",
        "My neighbor Caoimhe grows tomatoes on her balcony.",
    ],
    "Przemek": [
        "Przemek fixed the leaking tap in the bathroom.",
        "The keys are with Przemek at the front desk.",
        "Przemek is driving us to the airport tomorrow.",
        "I had lunch with Przemek and his brother.",
        # test
        "Przemek wrote a short story about his grandmother.",
        "Ask Przemek if the van is free on Monday.",
        "Everyone agreed that Przemek gave the best talk.",
    ],
    "Grzegorz": [
        "Grzegorz moved the billing service to a new server.",
        "Grzegorz restarted the database three times overnight.",
        "The whole team went hiking with Grzegorz.",
        "My brother and Grzegorz play chess every Sunday.",
        # test
        "Grzegorz makes the best pancakes in town.",
        "I still have the book that Grzegorz lent me.",
        "The bakery on the corner belongs to Grzegorz.",
    ],
    "Oisín": [
        "Oisín fixed the printer in the hallway.",
        "The concert tickets were bought by Oisín.",
        "Oisín is moving to Galway next month.",
        "I sent the draft to Oisín for review.",
        # test
        "Oisín forgot his jacket at the party.",
        "Have you seen Oisín since the wedding?",
        "The best photos were taken by Oisín.",
    ],
    "Zbigniew": [
        "Zbigniew runs the night shift at the warehouse.",
        "We asked Zbigniew to check the brakes.",
        "Zbigniew brought a cake for the whole office.",
        "The contract was signed by Zbigniew yesterday.",
        # test
        "Zbigniew plays the violin every evening.",
        "Send the invoice to Zbigniew before Friday.",
        "My cousin Zbigniew lives near the lake.",
    ],
    "Janáček": [
        "The quartet will open with Janáček tonight.",
        "Janáček wrote that opera late in his life.",
        "She practiced Janáček for the whole summer.",
        "The radio played Janáček after the news.",
        # test
        "The students are studying a Janáček sonata.",
        "Janáček is my grandfather's favorite composer.",
        "We bought tickets for the Janáček festival.",
    ],
    "Ceph": [
        "Ceph stores all the backups for the cluster.",
        "We added three new disks to Ceph today.",
        "The Ceph cluster recovered after the outage.",
        "Monitoring shows Ceph is almost full.",
        # test
        "Ceph lost a node during the night.",
        "I am moving the old volumes into Ceph.",
        "The storage team upgraded Ceph last week.",
    ],
    "Ciarán": [
        "Ciarán is cooking dinner for everyone tonight.",
        "I borrowed the ladder from Ciarán.",
        "Ciarán will drive the van to the market.",
        "The new logo was designed by Ciarán.",
        # test
        "Ciarán called while you were out.",
        "Ask Ciarán about the train times.",
        "Ciarán and his sister run the café.",
    ],
    "Niamh": [
        "Niamh left her umbrella in the kitchen again.",
        "The new schedule was written by Niamh.",
        "Niamh is teaching a yoga class on Saturday.",
        "I still owe Niamh twenty dollars for the tickets.",
        # test
        "Tell Niamh the package came this afternoon.",
        "Niamh painted the fence in the back garden.",
        "We are meeting Niamh for coffee after work.",
    ],
    "Wojciech": [
        "Wojciech has the spare key to the office.",
        "Our new intern, Wojciech, starts on Tuesday.",
        "Wojciech cooked dinner for the whole team.",
        "I left the spare chargers with Wojciech.",
        # test
        "Please ask Wojciech to check the shipping labels.",
        "Wojciech ran the marathon in under four hours.",
        "The slides for the keynote came from Wojciech.",
    ],
    "Memcached": [
        "Memcached holds the session data for the shop.",
        "We flushed Memcached and the errors went away.",
        "Memcached is using far too much memory on that host.",
        "Add another Memcached node before the sale starts.",
        # test
        "The page is slow because Memcached is down.",
        "I moved the user profiles out of Memcached.",
        "Memcached keeps dropping connections during the backup.",
    ],
    "Dvořák": [
        "The orchestra will play Dvořák after the intermission.",
        "Dvořák wrote that symphony while living in New York.",
        "We listened to Dvořák on the long drive home.",
        "Her recital opens with a short piece by Dvořák.",
        # test
        "My favorite piece tonight was the Dvořák quartet.",
        "Dvořák is playing on the radio in the kitchen.",
        "The choir is rehearsing a Dvořák mass this spring.",
    ],
    "Tadhg": [
        "Tadhg fixed the leaking tap in the bathroom.",
        "We left the spare keys with Tadhg.",
        "Tadhg is driving the minibus to the match.",
        "Have you met Tadhg from the finance team?",
        # test
        "Tadhg ordered pizza for the whole floor.",
        "The new schedule was written by Tadhg.",
        "I saw Tadhg at the bakery this morning.",
    ],
    "Gráinne": [
        "Gráinne is leading the workshop on Thursday.",
        "I borrowed a bicycle from Gráinne.",
        "Gráinne planted roses along the fence.",
        "The parcel for Gráinne arrived at noon.",
        # test
        "Gráinne will chair the committee next year.",
        "We are meeting Gráinne for lunch downtown.",
        "The poem was read aloud by Gráinne.",
    ],
    "Łukasz": [
        "Łukasz repaired the printer in five minutes.",
        "The train tickets are with Łukasz.",
        "Łukasz cooked soup for the whole family.",
        "Please remind Łukasz about the dentist.",
        # test
        "Łukasz is flying back from Krakow tonight.",
        "I gave the old guitar to Łukasz.",
        "Łukasz won the office quiz again.",
    ],
    "Cilium": [
        "Cilium handles the network policies in the cluster.",
        "We replaced the old plugin with Cilium.",
        "Cilium dropped packets after the upgrade.",
        "The team is testing Cilium on staging.",
        # test
        "Check the Cilium agent logs on every node.",
        "Cilium makes the service mesh much simpler.",
        "Our firewall rules now live in Cilium.",
    ],
    "Dearbhla": [
        "Dearbhla booked the flights to Rome.",
        "The keys to the van are with Dearbhla.",
        "Dearbhla is teaching the new hires today.",
        "We all signed a card for Dearbhla.",
        # test
        "Dearbhla painted the mural in the lobby.",
        "Send the final budget to Dearbhla.",
        "My sister and Dearbhla went hiking.",
    ],
    "Thibault": [
        "Thibault baked bread for the street party.",
        "The conference badge belongs to Thibault.",
        "Thibault is moving to a flat near the park.",
        "Could you call Thibault after dinner?",
        # test
        "Thibault forgot his umbrella on the bus.",
        "We are waiting for Thibault at the cinema.",
        "The wine was chosen by Thibault.",
    ],
    "Pádraig": [
        "Pádraig mowed the lawn before the rain.",
        "The tickets were sold out before Pádraig arrived.",
        "Pádraig is cooking lamb for Sunday lunch.",
        "Leave the drill with Pádraig next door.",
        # test
        "Pádraig plays the fiddle in a pub band.",
        "We asked Pádraig to lead the tour.",
        "The boat belongs to Pádraig and his brother.",
    ],
    "Chidi": [
        "Chidi is presenting the quarterly numbers.",
        "I lent my charger to Chidi.",
        "Chidi found a great apartment near work.",
        "The report was checked by Chidi twice.",
        # test
        "Chidi ran the marathon in under four hours.",
        "Tell Chidi the meeting moved to Friday.",
        "Chidi and his wife opened a bakery.",
    ],
    "Zabbix": [
        "Zabbix sent an alert about the disk space.",
        "We monitor every router with Zabbix.",
        "Zabbix stopped collecting data last night.",
        "The dashboard in Zabbix shows high memory use.",
        # test
        "Add the new database server to Zabbix.",
        "Zabbix flagged a spike in network traffic.",
        "I muted the noisy Zabbix triggers.",
    ],
    "Yevgeny": [
        "Yevgeny is translating the manual into Russian.",
        "The chess set was a gift from Yevgeny.",
        "Yevgeny missed the bus this morning.",
        "Please introduce Yevgeny to the new client.",
        # test
        "Yevgeny fixed the heating in the office.",
        "We celebrated the launch with Yevgeny.",
        "Yevgeny speaks four languages fluently.",
    ],
    "Fionnuala": [
        "Fionnuala sings in the church choir.",
        "The garden was designed by Fionnuala.",
        "Fionnuala is visiting her aunt in Galway.",
        "I still owe Fionnuala a coffee.",
        # test
        "Fionnuala wrote the opening speech.",
        "Ask Fionnuala where the spare chairs are.",
        "Fionnuala adopted a puppy last week.",
    ],
    "Nnamdi": [
        "Nnamdi coaches the junior football team.",
        "The laptop on the desk belongs to Nnamdi.",
        "Nnamdi is flying to Lagos on Friday.",
        "We asked Nnamdi to review the contract.",
        # test
        "Nnamdi cooked jollof rice for the party.",
        "I met Nnamdi at the train station.",
        "Nnamdi repainted the kitchen last weekend.",
    ],
    "Cathal": [
        "Cathal is driving the kids to football practice.",
        "We borrowed the lawn mower from Cathal.",
        "Cathal built the new shelves in the garage.",
        "Please send the signed contract to Cathal tonight.",
        # test
        "Cathal repaired the gate in the back garden.",
        "Could you ask Cathal about the parking permit?",
        "The best soup in town is made by Cathal.",
    ],
    "Róisín": [
        "Róisín booked the cottage for the long weekend.",
        "I left a message for Róisín at reception.",
        "Róisín makes the best lemon cake in the office.",
        "Everyone loved the photos that Róisín took.",
        # test
        "Róisín is teaching the piano class tonight.",
        "We met Róisín at the market on Saturday.",
        "The pub quiz was won by Róisín.",
    ],
    "Wiesław": [
        "Wiesław runs the bakery on the corner.",
        "We gave the old sofa to Wiesław.",
        "Wiesław is picking up the pizza tonight.",
        "Could you call Wiesław about the boiler?",
        # test
        "Wiesław cleaned the gutters before the storm.",
        "I saw Wiesław at the bus stop this morning.",
        "The broken lamp was fixed by Wiesław.",
    ],
    "Ailbhe": [
        "Ailbhe found my lost wallet on the train.",
        "The invitations were designed by Ailbhe.",
        "I am meeting Ailbhe for a run at seven.",
        "Ailbhe has the keys to the storage room.",
        # test
        "Ailbhe is running the bake sale this year.",
        "We bought a card for Ailbhe and her husband.",
        "The last train ticket went to Ailbhe.",
    ],
    "Bożena": [
        "Bożena is watering the tomatoes in the greenhouse.",
        "We bought fresh eggs from Bożena at the farm.",
        "Bożena sang at the wedding on Saturday.",
        "The old piano was a present from Bożena.",
        # test
        "Bożena is knitting a scarf for her grandson.",
        "Please tell Bożena that dinner is ready.",
        "The best photos of the trip came from Bożena.",
    ],
    "Oluwaseun": [
        "Oluwaseun is moving to Manchester in the spring.",
        "I sent the slides to Oluwaseun last night.",
        "Oluwaseun fixed the bug on the login page.",
        "The football match was refereed by Oluwaseun.",
        # test
        "Oluwaseun is leading the design review today.",
        "We had lunch with Oluwaseun near the river.",
        "The new budget was approved by Oluwaseun.",
    ],
    "Odhrán": [
        "Odhrán walked the dog along the beach.",
        "We are saving a seat for Odhrán.",
        "Odhrán finished the crossword before breakfast.",
        "Please give the spare helmet to Odhrán.",
        # test
        "Odhrán is cooking pasta for the whole team.",
        "I lent my bicycle to Odhrán last week.",
        "The lost keys were found by Odhrán.",
    ],
    "Velero": [
        "Velero copies the volume snapshots to the bucket.",
        "We tested a full restore from Velero yesterday.",
        "Velero skipped two namespaces in the last backup.",
        "The disaster recovery plan depends on Velero.",
        # test
        "Velero backs up the cluster every night.",
        "We restored the lost volume with Velero this morning.",
        "The nightly backup job failed in Velero.",
    ],
    "Bláithín": [
        "Bláithín is organizing the office Christmas party.",
        "I lent my umbrella to Bláithín this morning.",
        "Bláithín sings in a folk band on weekends.",
        "The flowers on the table are from Bláithín.",
        # test
        "Bláithín is starting a new job on Monday.",
        "I had coffee with Bláithín after the meeting.",
        "The funny birthday card came from Bláithín.",
    ],
    "Szczepan": [
        "Szczepan is painting the hallway this weekend.",
        "We hired Szczepan to fix the roof.",
        "Szczepan brought fresh apples from his garden.",
        "Please leave the ladder with Szczepan.",
        # test
        "Szczepan fixed the heating in the basement.",
        "We are meeting Szczepan at the café downtown.",
        "The blue van belongs to Szczepan.",
    ],
    "Krzysztof": [
        "Krzysztof is cooking dinner for his parents tonight.",
        "We waited for Krzysztof outside the cinema.",
        "Krzysztof plays the guitar in a jazz band.",
        "The meeting notes were sent by Krzysztof.",
        # test
        "Krzysztof drove the kids to school today.",
        "I borrowed a tent from Krzysztof for the trip.",
        "The new office plants were a gift from Krzysztof.",
    ],
    "Małgorzata": [
        "Małgorzata teaches French at the local school.",
        "I bought a painting from Małgorzata last year.",
        "Małgorzata is flying to Warsaw on Thursday.",
        "The hotel was booked by Małgorzata.",
        # test
        "Małgorzata is baking bread for the market.",
        "We asked Małgorzata to read the final draft.",
        "The lovely garden belongs to Małgorzata.",
    ],
    "Tekton": [
        "Tekton pushed the new image to the registry.",
        "Our nightly builds now run on Tekton.",
        "Tekton timed out during the integration tests.",
        "Add a lint step to the Tekton pipeline.",
        # test
        "Tekton runs the build pipeline for every commit.",
        "We moved the release jobs to Tekton last month.",
        "The failed test was reported by Tekton.",
    ],
    "Ngozi": [
        "Ngozi is teaching a cooking class on Saturday.",
        "We sent flowers to Ngozi after the surgery.",
        "Ngozi found the bug in the payment code.",
        "The tickets for the concert are with Ngozi.",
        # test
        "Ngozi is flying home to Lagos tonight.",
        "Ask Ngozi about the new parking rules.",
        "The quarterly report was written by Ngozi.",
    ],
    "Sadhbh": [
        "Sadhbh walks her dog by the canal every morning.",
        "We are visiting Sadhbh in the hospital tomorrow.",
        "Sadhbh knitted a blue hat for the baby.",
        "The quiz questions were written by Sadhbh.",
        # test
        "Sadhbh is bringing the cake to the party.",
        "I asked Sadhbh to check the train times.",
        "The spare umbrella belongs to Sadhbh.",
    ],
    "Jędrzej": [
        "Jędrzej fixed the wobbly table in the kitchen.",
        "I lent my camera to Jędrzej for the weekend.",
        "Jędrzej is cooking pierogi for the whole team.",
        "The new recipe came from Jędrzej.",
        # test
        "Jędrzej is training for the city marathon.",
        "Ask Jędrzej to bring the extra chairs.",
        "The whole presentation was prepared by Jędrzej.",
    ],
    "Thandiwe": [
        "Thandiwe booked the train tickets to Cape Town.",
        "We are celebrating with Thandiwe after work.",
        "Thandiwe runs the youth choir at church.",
        "The final design was approved by Thandiwe.",
        # test
        "Thandiwe is presenting the sales figures today.",
        "I met Thandiwe at the bookshop on Friday.",
        "The painting in the hall is by Thandiwe.",
    ],
    "Clodagh": [
        "Clodagh is learning to play the cello.",
        "We bought a leaving present for Clodagh.",
        "Clodagh fixed the projector before the talk.",
        "The kitchen tiles were chosen by Clodagh.",
        # test
        "Clodagh booked a table for eight people.",
        "I think Clodagh left her phone in the car.",
        "The garden party was organized by Clodagh.",
    ],
    "Sorcha": [
        "Sorcha is leading the workshop on Thursday.",
        "I returned the blue jacket to Sorcha.",
        "The photos from the wedding were taken by Sorcha.",
        "Could you ask Sorcha to lock the back door?",
        # test
        "Sorcha bought fresh bread on the way home.",
        "We are having lunch with Sorcha tomorrow.",
        "The new logo was designed by Sorcha.",
    ],
    "Jacek": [
        "Jacek parked the van behind the warehouse.",
        "I still owe Jacek a coffee.",
        "The tickets were booked by Jacek.",
        "Has Jacek finished painting the garage?",
        # test
        "Jacek is teaching his son to swim.",
        "Please forward the schedule to Jacek.",
        "The old piano belongs to Jacek.",
    ],
    "Uchenna": [
        "Uchenna won the chess match on Sunday.",
        "We are sending the contract to Uchenna.",
        "The garden was planted by Uchenna last spring.",
        "Did Uchenna get the package I sent?",
        # test
        "Uchenna is giving a talk at the conference.",
        "I drove to work with Uchenna today.",
        "The best cake at the party came from Uchenna.",
    ],
    "Szymon": [
        "Szymon is repairing the fence this weekend.",
        "I lent my drill to Szymon.",
        "The budget report was checked by Szymon.",
        "Can Szymon pick up the kids after school?",
        # test
        "Szymon missed the train this morning.",
        "We celebrated the launch with Szymon.",
        "The new menu was written by Szymon.",
    ],
    "Grażyna": [
        "Grażyna makes the best dumplings in the family.",
        "I called Grażyna about the rent.",
        "The knitting class is taught by Grażyna.",
        "Will Grażyna join us for the concert?",
        # test
        "Grażyna is visiting her sister this weekend.",
        "We left the spare key with Grażyna.",
        "The curtains were sewn by Grażyna.",
    ],
    "Tendai": [
        "Tendai scored the winning goal on Saturday.",
        "Please hand the keys to Tendai.",
        "The playlist for the party was made by Tendai.",
        "Is Tendai coming to the barbecue?",
        # test
        "Tendai is studying for the final exam.",
        "I shared a taxi with Tendai last night.",
        "The bookshelf was built by Tendai.",
    ],
    "Fluentd": [
        "Fluentd is dropping messages under heavy load.",
        "We forward the container logs to Fluentd.",
        "The Fluentd buffer filled up overnight.",
        "Can you restart Fluentd on the edge nodes?",
        # test
        "Fluentd crashed after the config change.",
        "I added a new output plugin to Fluentd.",
        "The Fluentd pods are using too much memory.",
    ],
    "Knative": [
        "Knative scales the service down to zero.",
        "We moved the webhook handlers to Knative.",
        "The Knative route is not ready yet.",
        "Did you upgrade Knative on the test cluster?",
        # test
        "Knative is pulling the wrong image tag.",
        "I deployed the new function with Knative.",
        "The Knative revision failed its health check.",
    ],
    "Qiang": [
        "Qiang is presenting the quarterly results.",
        "I borrowed a ladder from Qiang.",
        "The travel plans were made by Qiang.",
        "Could Qiang review my slides tonight?",
        # test
        "Qiang is learning to play the guitar.",
        "We went hiking with Qiang on Sunday.",
        "The flowers on the desk are from Qiang.",
    ],
    "Xinyi": [
        "Xinyi is organizing the charity run.",
        "I emailed the draft to Xinyi.",
        "The birthday card was signed by Xinyi.",
        "Has Xinyi seen the new office yet?",
        # test
        "Xinyi is cooking dumplings for the party.",
        "We are meeting Xinyi at the museum.",
        "The winning photo was taken by Xinyi.",
    ],
    "Aisling": [
        "Aisling is running the marathon next month.",
        "I gave the spare tickets to Aisling.",
        "The wedding photos were taken by Aisling.",
        "Did Aisling finish the quarterly budget?",
        # test
        "Aisling is moving to Galway in the spring.",
        "We had lunch with Aisling on Friday.",
        "The blue bicycle belongs to Aisling.",
    ],
    "Gearóid": [
        "Gearóid is driving us to the airport.",
        "I sent the invoice to Gearóid this morning.",
        "The new shelves were fitted by Gearóid.",
        "Will Gearóid be at the match on Saturday?",
        # test
        "Gearóid is learning to play the fiddle.",
        "We watched the final with Gearóid.",
        "The soup recipe came from Gearóid.",
    ],
    "Laoise": [
        "Laoise is taking the dog for a walk.",
        "Please give the report to Laoise.",
        "The poster was designed by Laoise.",
        "Has Laoise booked the hotel yet?",
        # test
        "Laoise is starting a new job on Monday.",
        "I went to the cinema with Laoise.",
        "The lemon cake was baked by Laoise.",
    ],
    "Nkechi": [
        "Nkechi is leading the workshop today.",
        "I posted the birthday card to Nkechi.",
        "The seating plan was made by Nkechi.",
        "Did Nkechi call the landlord back?",
        # test
        "Nkechi is flying to Lagos next week.",
        "We shared a table with Nkechi at the wedding.",
        "The best photos came from Nkechi.",
    ],
    "Bartłomiej": [
        "Bartłomiej is checking the server logs.",
        "I returned the ladder to Bartłomiej.",
        "The floor was tiled by Bartłomiej.",
        "Will Bartłomiej join the call at noon?",
        # test
        "Bartłomiej is cooking dinner for the team.",
        "We went fishing with Bartłomiej.",
        "The wooden table was made by Bartłomiej.",
    ],
    "Mateusz": [
        "Mateusz is repairing the old car.",
        "I forwarded the email to Mateusz.",
        "The holiday was planned by Mateusz.",
        "Has Mateusz paid for the tickets?",
        # test
        "Mateusz is reading in the library.",
        "We are driving to the coast with Mateusz.",
        "The birthday cake was ordered by Mateusz.",
    ],
    "Gitea": [
        "Gitea hosts all of our private repositories.",
        "We mirrored the old project to Gitea.",
        "The Gitea runner is stuck again.",
        "Did you back up Gitea last night?",
        # test
        "Gitea is sending the webhook twice.",
        "I opened a pull request on Gitea.",
        "The Gitea server needs a new disk.",
    ],
    "Caoilfhionn": [
        "Caoilfhionn is running the kids' swimming club.",
        "I passed the message on to Caoilfhionn.",
        "The garden party was planned by Caoilfhionn.",
        "Has Caoilfhionn sent the photos yet?",
        # test
        "Caoilfhionn is flying home for Christmas.",
        "We are having coffee with Caoilfhionn.",
        "The new curtains were chosen by Caoilfhionn.",
    ],
    "Ngaire": [
        "Ngaire is teaching the beginners' yoga class.",
        "I left the car keys with Ngaire.",
        "The fundraiser was organized by Ngaire.",
        "Is Ngaire coming to the quiz night?",
        # test
        "Ngaire is walking the coastal track this week.",
        "We baked bread with Ngaire on Sunday.",
        "The painting in the hall is by Ngaire.",
    ],
    "Wawrzyniec": [
        "Wawrzyniec is fixing the office printer.",
        "I sold my old bike to Wawrzyniec.",
        "The concert tickets were bought by Wawrzyniec.",
        "Will Wawrzyniec drive us to the lake?",
        # test
        "Wawrzyniec is building a shed in the garden.",
        "We stayed up late talking to Wawrzyniec.",
        "The new kitchen was designed by Wawrzyniec.",
    ],
    "Adaeze": [
        "Adaeze is chairing the meeting tomorrow.",
        "I gave my old laptop to Adaeze.",
        "The conference talk was given by Adaeze.",
        "Did Adaeze get the job in London?",
        # test
        "Adaeze is running a bakery downtown.",
        "We went to the concert with Adaeze.",
        "The wedding cake was made by Adaeze.",
    ],
    "Iñaki": [
        "Iñaki is cooking paella for everyone.",
        "I lent my tent to Iñaki.",
        "The football team is coached by Iñaki.",
        "Can Iñaki take the early shift?",
        # test
        "Iñaki is surfing in the north this week.",
        "We shared a flat with Iñaki in college.",
        "The old sailing boat belongs to Iñaki.",
    ],
    "Kyverno": [
        "Kyverno blocked the pod without resource limits.",
        "We moved the cluster policies to Kyverno.",
        "The Kyverno webhook timed out again.",
        "Can you update Kyverno on the production cluster?",
        # test
        "Kyverno is rejecting images from the public registry.",
        "I wrote a new validation rule for Kyverno.",
        "The Kyverno reports show twelve violations.",
    ],
    "Kubeflow": [
        "Kubeflow runs the nightly training jobs.",
        "We moved the model pipelines to Kubeflow.",
        "The Kubeflow notebook server crashed.",
        "Can you give me access to Kubeflow?",
        # test
        "Kubeflow is stuck on the data loading step.",
        "I scheduled the new experiment in Kubeflow.",
        "The Kubeflow dashboard shows three failed runs.",
    ],
}
N_TRAIN = 4

# Spoken corrections: (term, sentence the user said, what the correction clip says).
SPOKEN = {
    "dev": [
        ("Xochitl", "Xochitl is bringing the projector to the workshop.",
         "No, I said Xochitl. X, O, C, H, I, T, L."),
        ("PostgreSQL", "Restore the PostgreSQL dump on the new laptop.",
         "No, I meant PostgreSQL."),
        ("Tadeusz", "Tadeusz is flying to Warsaw on Sunday.",
         "Tadeusz is flying to Warsaw on Sunday."),
    ],
    "dev2": [
        ("Caoimhe", "Caoimhe booked the meeting room for Tuesday.",
         "No, I said Caoimhe. C, A, O, I, M, H, E."),
        ("Przemek", "The deploy was approved by Przemek.",
         "No, I meant Przemek."),
    ],
    "dev3": [
        ("Zbigniew", "Zbigniew is fixing the roof on Sunday.",
         "No, I said Zbigniew. Z, B, I, G, N, I, E, W."),
        ("Ceph", "Restart the Ceph monitor on the first host.",
         "No, I meant Ceph."),
        ("Oisín", "Oisín took the early train to Dublin.",
         "Oisín took the early train to Dublin."),
    ],
    "heldout": [
        ("Wojciech", "Wojciech will review the pull request tonight.",
         "No, I said Wojciech. W, O, J, C, I, E, C, H."),
        ("Niamh", "Niamh booked a table for six people.",
         "No, sorry, I meant Niamh."),
        ("Memcached", "The login service talks to Memcached directly.",
         "The login service talks to Memcached directly."),
    ],
    "dev4": [
        ("Thibault", "Thibault is bringing the drinks tonight.",
         "No, I said Thibault. T, H, I, B, A, U, L, T."),
        ("Cilium", "Restart Cilium on the worker nodes.",
         "No, I meant Cilium."),
        ("Tadhg", "Tadhg locked the office on Friday.",
         "Tadhg locked the office on Friday."),
    ],
    "heldout2": [
        ("Chidi", "Chidi is hosting the book club this month.",
         "No, I said Chidi. C, H, I, D, I."),
        ("Zabbix", "The Zabbix server needs more memory.",
         "No, I meant Zabbix."),
        ("Fionnuala", "Fionnuala is bringing dessert on Saturday.",
         "Fionnuala is bringing dessert on Saturday."),
    ],
    "dev5": [
        ("Cathal", "Cathal is bringing the barbecue on Sunday.",
         "No, I said Cathal. C, A, T, H, A, L."),
        ("Velero", "Run a Velero backup before the upgrade.",
         "No, sorry, I meant Velero."),
        ("Róisín", "Róisín took the late train to Cork.",
         "Róisín took the late train to Cork."),
    ],
    "heldout3": [
        ("Ngozi", "Ngozi is hosting the team lunch tomorrow.",
         "No, I said Ngozi. N, G, O, Z, I."),
        ("Tekton", "The Tekton trigger fired twice this morning.",
         "No, sorry, I meant Tekton."),
        ("Clodagh", "Clodagh is bringing the salad on Friday.",
         "Clodagh is bringing the salad on Friday."),
    ],
    "heldout4": [
        ("Jacek", "Jacek is fixing the bathroom tap today.",
         "No, I said Jacek. J, A, C, E, K."),
        ("Fluentd", "Fluentd stopped shipping the logs last night.",
         "No, sorry, I meant Fluentd."),
        ("Tendai", "Tendai is cooking for everyone tonight.",
         "Tendai is cooking for everyone tonight."),
    ],
    "heldout5": [
        ("Nkechi", "Nkechi is hosting the dinner on Friday.",
         "No, I said Nkechi. N, K, E, C, H, I."),
        ("Kyverno", "Kyverno blocked the new deployment.",
         "No, sorry, I meant Kyverno."),
        ("Laoise", "Laoise is collecting the parcel today.",
         "Laoise is collecting the parcel today."),
    ],
}

# Accepted dialogs: ordinary sentences base tiny.en gets right (no correction typed).
ACCEPTED = {
    "dev": [
        "Please turn off the lights when you leave the room.",
        "The bus was twenty minutes late this morning.",
        "I will send you the agenda before the meeting.",
        "We need more milk and bread from the store.",
    ],
    "dev2": [
        "Please water the plants on the balcony.",
        "I think the shop closes at six today.",
    ],
    "dev3": [
        "The printer on the second floor is out of paper.",
        "We should leave before the traffic gets bad.",
        "Dinner will be ready in ten minutes.",
    ],
    "heldout": [
        "The weather should be sunny for most of the week.",
        "Could you close the window before it starts raining?",
        "My phone battery dies every afternoon.",
        "I usually walk to work when the weather is nice.",
    ],
    "dev4": [
        "The bus was late again this morning.",
        "Please close the window when you leave.",
        "We need more chairs for the meeting.",
    ],
    "heldout2": [
        "The soup is too hot to eat.",
        "My phone battery died at lunch.",
        "The shop opens at nine tomorrow.",
    ],
    "dev5": [
        "The parking lot is full this morning.",
        "I will call you right after the meeting.",
        "The kettle is on the kitchen counter.",
    ],
    "heldout3": [
        "The train was very crowded today.",
        "Please put the milk in the fridge.",
        "We walked home after the film.",
    ],
    "heldout4": [
        "The library closes early on Sundays.",
        "My brother is moving to a new flat.",
        "The meeting ran over by ten minutes.",
    ],
    "heldout5": [
        "The post arrives after lunch on weekdays.",
        "Please bring an umbrella tomorrow.",
        "We ran out of coffee this morning.",
    ],
}

# Sentences that sound like a term but do not contain it.
SOUNDALIKE = [
    ("PostgreSQL", "We sat on the post grass and watched the game."),
    ("PostgreSQL", "The post office closes early on Saturdays."),
    ("Xochitl", "The next winter games were held in Sochi."),
    ("Xochitl", "The so-called expert never showed up."),
    ("Tadeusz", "Ted was late for the meeting again."),
    ("Tadeusz", "Today we should finish the painting."),
    ("Nguyen", "I really hope our team can win tonight."),
    ("Nguyen", "When does the next train leave?"),
    ("Nginx", "The engine makes a strange noise in the cold."),
    ("Nginx", "We need engineers for the new project."),
    ("Saoirse", "Sasha is bringing the salad to the party."),
    ("Saoirse", "Yes, sir, sure, I will be there."),
    ("Niamh", "Neve Campbell starred in that old movie."),
    ("Niamh", "It was naive to trust the weather report."),
    ("Wojciech", "Please do a voice check before the show."),
    ("Wojciech", "The boy checked the mailbox twice."),
    ("Memcached", "The bank cashed my check on Monday."),
    ("Memcached", "Members cashed in their reward points."),
    ("Dvořák", "The fork is on the left side of the plate."),
    ("Dvořák", "They drove a truck across the border."),
    ("Aoife", "Eva is reading in the garden."),
    ("Aoife", "If I were you, I would wait."),
    ("Caoimhe", "The key was under the mat."),
    ("Caoimhe", "Keep the change, said the driver."),
    ("Przemek", "Please check the fresh milk in the fridge."),
    ("Przemek", "She made a mess in the kitchen."),
    ("Grzegorz", "The sunset over the gorge was gorgeous."),
    ("Grzegorz", "The guests were gossiping all evening."),
    ("Oisín", "The car had a nice sheen after the wash."),
    ("Oisín", "Oh, she left early today."),
    ("Zbigniew", "That was big news for the whole town."),
    ("Zbigniew", "The big new office opens next week."),
    ("Janáček", "Yana checked the tickets at the door."),
    ("Janáček", "Jan checked the oven twice."),
    ("Ceph", "Seth is fixing the bike in the garage."),
    ("Ceph", "Put the money in the safe."),
    ("Ciarán", "Here on the table is your coffee."),
    ("Ciarán", "Kira and her dog went for a walk."),
    # fifth session: dev4 and heldout2
    ("Tadhg", "The price tag was still on the coat."),
    ("Tadhg", "The tiger slept in the shade."),
    ("Gráinne", "Granny baked a pie for us."),
    ("Gráinne", "The grain silo is almost full."),
    ("Łukasz", "Lucas is painting the fence."),
    ("Łukasz", "Look, a shooting star over the hill."),
    ("Cilium", "The silly dog chased its own tail."),
    ("Cilium", "Silicon chips are getting cheaper."),
    ("Dearbhla", "Darla called me this morning."),
    ("Dearbhla", "The derby was exciting this year."),
    ("Thibault", "The tea bowl cracked in the oven."),
    ("Thibault", "Tibet is very high above the sea."),
    ("Pádraig", "Patrick is driving us home."),
    ("Pádraig", "The paddock was full of horses."),
    ("Chidi", "The cheetah ran across the plain."),
    ("Chidi", "That was a cheeky answer."),
    ("Zabbix", "The zebra was eating grass."),
    ("Zabbix", "Sam picks the songs tonight."),
    ("Yevgeny", "Even Jenny came to the party."),
    ("Yevgeny", "You have gotten so tall."),
    ("Fionnuala", "Fiona lost her umbrella."),
    ("Fionnuala", "The final list is ready."),
    ("Nnamdi", "Name the day and I will come."),
    ("Nnamdi", "Name the dog Max."),
    # sixth session: dev5 and heldout3
    ("Cathal", "Carl helped me move the sofa upstairs."),
    ("Cathal", "The cattle are sleeping in the old barn."),
    ("Róisín", "Rosie is walking the dog."),
    ("Róisín", "We planted a rose in the front garden."),
    ("Wiesław", "Yes, we have fresh waffles."),
    ("Wiesław", "The blue vest was hanging on the chair."),
    ("Ailbhe", "The alpha version is ready for testing."),
    ("Ailbhe", "Half a loaf is better than none."),
    ("Bożena", "Both Jenna and Anna are coming tonight."),
    ("Bożena", "We drove to Modena last summer."),
    ("Oluwaseun", "All of us went home early after the game."),
    ("Oluwaseun", "Oliver washed the dishes after dinner."),
    ("Odhrán", "The orange juice in the fridge is cold."),
    ("Odhrán", "Oh, Ron called you back this morning."),
    ("Velero", "Valerie is bringing dessert."),
    ("Velero", "Very low clouds covered the hills."),
    ("Bláithín", "Blaming him will not help anyone."),
    ("Bláithín", "Blowing bubbles is fun."),
    ("Szczepan", "Steven is fixing the sink in the kitchen."),
    ("Szczepan", "Chop the onions for the soup."),
    ("Krzysztof", "Christopher is reading a book."),
    ("Krzysztof", "Chris is stopping by the office later."),
    ("Małgorzata", "I ordered a margarita at the bar."),
    ("Małgorzata", "Mal got a new car last week."),
    ("Tekton", "The tectonic plates are moving slowly."),
    ("Tekton", "Tech support called me back this morning."),
    ("Ngozi", "Go easy on the new guy."),
    ("Ngozi", "Go see the doctor about your cough."),
    ("Sadhbh", "Drain the pasta in the sieve over the sink."),
    ("Sadhbh", "Clive is cooking dinner tonight."),
    ("Jędrzej", "Angie is coming over for lunch today."),
    ("Jędrzej", "Yes, Jane will drive us home tonight."),
    ("Thandiwe", "Sandy went away for the weekend."),
    ("Thandiwe", "Andy was on his way to work."),
    ("Clodagh", "Claudia is working from home today."),
    ("Clodagh", "Close the door, please, it is cold."),
    # twelfth session: heldout4
    ("Sorcha", "The circus came to town last week."),
    ("Sorcha", "Sir, could you sign here, please?"),
    ("Jacek", "The yacht set sail at noon."),
    ("Jacek", "Jack checked the tyres twice."),
    ("Uchenna", "Who changed the password again?"),
    ("Uchenna", "You can join us for dinner."),
    ("Szymon", "Simon is cooking dinner tonight."),
    ("Szymon", "The shimmering lake looked cold."),
    ("Grażyna", "The grazing cows stood in the rain."),
    ("Grażyna", "Gracie now works at the library."),
    ("Tendai", "The tender closes on Friday."),
    ("Tendai", "Ten days is too long to wait."),
    ("Fluentd", "She is fluent in three languages."),
    ("Fluentd", "The influence of the weather is huge."),
    ("Knative", "She is a native of Dublin."),
    ("Knative", "Every native plant needs water."),
    ("Qiang", "Change the battery in the remote."),
    ("Qiang", "The chairs are stacked in the hall."),
    ("Xinyi", "The shiny car is parked outside."),
    ("Xinyi", "She knew the answer right away."),
    # seventeenth session: heldout5
    ("Aisling", "Ashley is coming to the party."),
    ("Aisling", "The ash tree lost its leaves early."),
    ("Gearóid", "The garage door is stuck again."),
    ("Gearóid", "Gerald rode his bike to school."),
    ("Laoise", "Lisa is making tea for everyone."),
    ("Laoise", "We signed the lease on Monday."),
    ("Nkechi", "Ketchup goes well with chips."),
    ("Nkechi", "Catch me if you can, said the little boy."),
    ("Bartłomiej", "Bart went to the store for milk."),
    ("Bartłomiej", "The bathroom mirror is cracked."),
    ("Mateusz", "Matthew is late for work again."),
    ("Mateusz", "The mattress was delivered today."),
    ("Gitea", "Get the tea ready for the guests."),
    ("Gitea", "The guitar in the hall is out of tune."),
    ("Caoilfhionn", "Kevin is cleaning the car."),
    ("Caoilfhionn", "We are killing time before the film."),
    ("Ngaire", "Nearly everyone came to the party."),
    ("Ngaire", "Nairobi is hot in the summer."),
    ("Wawrzyniec", "Bavaria is lovely in the autumn."),
    ("Wawrzyniec", "The waves were high this morning."),
    ("Adaeze", "Ada is learning to ride a bike."),
    ("Adaeze", "A daisy grew by the fence."),
    ("Iñaki", "I need a key for the back door."),
    ("Iñaki", "Nicky is coming round for dinner tonight."),
    ("Kyverno", "The governor gave a long speech."),
    ("Kyverno", "The caverns in the hills are cold."),
    ("Kubeflow", "The cube of ice melted slowly."),
    ("Kubeflow", "The river flow is strong in spring."),
]

GENERAL = [
    "I left my keys on the kitchen table.",
    "The meeting has been moved to Thursday afternoon.",
    "Can you pick up some groceries on the way home?",
    "It has been raining all week in the city.",
    "She finished reading the book in two days.",
    "The train to the airport leaves every ten minutes.",
    "We should paint the living room a lighter color.",
    "He forgot to bring his laptop charger again.",
    "The children are playing football in the park.",
    "Please remember to lock the door at night.",
    "Our flight was delayed because of the storm.",
    "I would like a cup of coffee with milk.",
    "The doctor said I should get more sleep.",
    "They are planning a trip to the mountains in June.",
    "The printer on the second floor is out of paper.",
    "My sister just adopted a small black cat.",
    "Dinner will be ready in about twenty minutes.",
    "The new restaurant downtown has great reviews.",
    "Please send me the report by the end of the day.",
    "The library is closed on public holidays.",
    "I need to renew my driving license this year.",
    "The garden looks beautiful in the spring.",
    "We watched a funny movie last night.",
    "Turn left at the next traffic light.",
    "The museum offers free entry on Sundays.",
]

# ---- examples/ (small committed demo): two terms, fresh sentences ----
EX_TERMS = ["Xochitl", "Nginx"]
EX_DIALOGS = [  # (sentence, kind) kind: typed | spoken | accepted
    ("Xochitl is running late for the standup.", "typed"),
    ("Nginx keeps crashing on the test machine.", "typed"),
    ("Please give the spare laptop to Xochitl.", "typed"),
    ("We moved the load balancer to Nginx.", "typed"),
    ("Xochitl wrote most of the onboarding guide.", "typed"),
    ("The Nginx access log is full of bots.", "typed"),
    ("Did you tell Xochitl about the office move?", "spoken"),
    ("The coffee machine on our floor is broken.", "accepted"),
]
EX_SPOKEN_FIX = "No, I said Xochitl. X, O, C, H, I, T, L."
EX_EVAL = [
    ("Xochitl is flying to Denver on Wednesday.", ["Xochitl"]),
    ("I asked Xochitl to review the budget.", ["Xochitl"]),
    ("The upgrade broke the Nginx rewrite rules.", ["Nginx"]),
    ("Our Nginx container ran out of disk space.", ["Nginx"]),
    ("The kids are watching cartoons in the living room.", []),
    ("I bought new running shoes last weekend.", []),
]

# ---- voices: (hibari speed, pitch factor, SNR dB or None) ----
TRAIN_VOICE = (1.0, 1.0, None)
TEST_VOICES = [(0.85, 0.92, None), (1.12, 1.08, 25.0), (1.0, 1.0, 15.0)]
MIXED_VOICES = [(1.0, 1.0, None), (0.9, 0.95, 30.0), (1.1, 1.05, None)]
FIX_VOICE = (0.95, 1.0, None)


def _seed(*parts) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode()) & 0x7FFFFFFF


def slug(text: str, n: int = 40) -> str:
    import unicodedata

    t = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", t.lower()).strip("_")[:n]


class Renderer:
    def __init__(self, force: bool):
        self.force = force
        self.manifests: dict[Path, dict] = {}  # clips dir -> {file name: what it says, in which voice}
        self._hibari = None
        self.rendered = 0
        self.skipped = 0

    def _manifest(self, folder: Path) -> dict:
        if folder not in self.manifests:
            f = folder / "manifest.json"
            self.manifests[folder] = json.loads(f.read_text(encoding="utf-8")) if f.exists() else {}
        return self.manifests[folder]

    def save_manifests(self):
        for folder, data in self.manifests.items():
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "manifest.json").write_text(
                json.dumps(dict(sorted(data.items())), ensure_ascii=False, indent=0) + "\n", encoding="utf-8")

    @property
    def hibari(self):
        if self._hibari is None:
            import hibari

            self._hibari = hibari.Hibari()
        return self._hibari

    @staticmethod
    def _hibari_text(text: str) -> str:
        for term, (ipa, _) in PRON.items():
            text = re.sub(rf"\b{re.escape(term)}\b", f"[{term}](/{ipa}/)", text)
        return text

    @staticmethod
    def _espeak_text(text: str) -> str:
        for term, (_, resp) in PRON.items():
            text = re.sub(rf"\b{re.escape(term)}\b", resp, text)
        return text

    def hibari_audio(self, text, voice):
        speed, pitch, snr = voice
        wav = self.hibari(self._hibari_text(text), speed=speed, seed=_seed("tts", text, voice))
        # treat the 24 kHz output as 24k*pitch: higher pitch (and a little faster) for pitch > 1
        audio = soxr.resample(wav.astype(np.float32), 24000 * pitch, SR)
        return self._finish(audio, snr, ("noise", text, voice))

    def espeak_audio(self, text, variant=0):
        voices = ["en-us", "en-us+f3", "en+m3"]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "e.wav"
            subprocess.run(
                ["espeak-ng", "-v", voices[variant % 3], "-s", "160", "-w", str(path), self._espeak_text(text)],
                check=True, capture_output=True,
            )
            wav, sr = sf.read(path, dtype="float32")
        audio = soxr.resample(wav, sr, SR)
        return self._finish(audio, None, None)

    @staticmethod
    def _finish(audio, snr, seed_key):
        audio = audio.astype(np.float64)
        # trim long silences at the ends, keep 0.2 s padding
        idx = np.nonzero(np.abs(audio) > 0.01 * (np.abs(audio).max() + 1e-9))[0]
        if len(idx):
            pad = int(0.2 * SR)
            audio = audio[max(0, idx[0] - pad): idx[-1] + pad]
        audio = np.concatenate([np.zeros(int(0.15 * SR)), audio, np.zeros(int(0.15 * SR))])
        if snr is not None:
            rng = np.random.default_rng(_seed(*seed_key))
            power = np.mean(audio**2)
            audio = audio + rng.normal(0, np.sqrt(power / 10 ** (snr / 10)), len(audio))
        peak = np.abs(audio).max()
        if peak > 0:
            audio = audio * (0.9 / peak)
        return audio.astype(np.float32)

    def clip(self, path: Path, text: str, voice=TRAIN_VOICE, espeak: int | None = None) -> float:
        """Render text to path (16 kHz mono PCM_16) unless it exists; returns its duration."""
        key = f"{'espeak' if espeak is not None else 'hibari'}|{espeak if espeak is not None else voice}|{text}"
        manifest = self._manifest(path.parent)
        if path.exists() and not self.force and manifest.get(path.name) == key:
            self.skipped += 1
            return sf.info(path).duration
        manifest[path.name] = key
        path.parent.mkdir(parents=True, exist_ok=True)
        audio = self.espeak_audio(text, espeak) if espeak is not None else self.hibari_audio(text, voice)
        sf.write(path, audio, SR, subtype="PCM_16")
        self.rendered += 1
        dur = len(audio) / SR
        if not 2.0 <= dur <= 6.0:
            print(f"warning: {path.name} is {dur:.1f} s (outside 2-6 s): {text}", file=sys.stderr)
        return dur


def interleave(groups):
    """[[a1,a2],[b1,b2]] -> [a1,b1,a2,b2]"""
    out = []
    for i in range(max(len(g) for g in groups)):
        out += [g[i] for g in groups if i < len(g)]
    return out


def write_jsonl(path: Path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def training_dialogs(split: str, terms: list[str], say, user_checks: bool = False) -> list[dict]:
    """A slice's training dialogs: typed corrections interleaved across terms, with the accepted and
    spoken ones spread through them. ``say(name, text, fix=False)`` renders a clip, returns its path.

    ``user_checks``: the user reads every answer, as ``ffasr listen`` at a terminal asks them to,
    and types the sentence where it was heard wrong: an accepted sentence (a typed correction the
    same as the transcript is an acceptance) and a spoken correction (replay teaches the typed
    text where the spoken one was heard as other words). Base tiny.en hears every accepted sentence
    right in hibari's voice, not in espeak-ng's, and no user accepts "But Wojciech should be
    sunny…", or teaches "The Nnamix server…" for "The Zabbix server…".
    """
    typed = []
    for term in terms:
        rows = []
        for i, s in enumerate(SENTENCES[term][:N_TRAIN]):
            audio = say(f"train_{slug(term, 12)}_{i}", s)
            rows.append({"audio": audio, "correction": s, "reference": s, "terms": [term]})
        typed.append(rows)
    typed = interleave(typed)

    def checked(sentence: str) -> dict:  # what the user types if it was heard wrong
        return {"correction": sentence} if user_checks else {}

    accepted = [{"audio": say(f"accept_{split}_{i}", s), "reference": s} | checked(s) for i, s in enumerate(ACCEPTED[split])]
    spoken = []
    for i, (term, s, fix) in enumerate(SPOKEN[split]):
        name = f"spoken_{slug(term, 12)}_{i}"
        spoken.append({"audio": say(name, s), "correction_audio": say(f"{name}_fix", fix, fix=True),
                       "correction_text": fix, "reference": s, "terms": [term]} | checked(s))
    rows, extra = [], interleave([accepted, spoken])
    step = max(1, len(typed) // (len(extra) + 1))
    for i, row in enumerate(typed):
        rows.append(row)
        if (i + 1) % step == 0 and extra:
            rows.append(extra.pop(0))
    return rows + extra


def build_benchmark(out: Path, r: Renderer) -> list[str]:
    clips = out / "clips"
    files = []
    for split, terms in (("dev", DEV_TERMS), ("dev2", DEV2_TERMS), ("dev3", DEV3_TERMS),
                          ("heldout", HELDOUT_TERMS),
                          ("dev4", DEV4_TERMS), ("heldout2", HELDOUT2_TERMS),
                          ("dev5", DEV5_TERMS), ("heldout3", HELDOUT3_TERMS),
                          ("heldout4", HELDOUT4_TERMS), ("heldout5", HELDOUT5_TERMS)):
        # training dialogs, once in hibari and once in espeak-ng: a voice nothing was tuned on
        for suffix, voice, fix_voice, espeak in (("", TRAIN_VOICE, FIX_VOICE, None), ("_espeak", None, None, 0)):

            def say(name: str, text: str, fix: bool = False) -> str:
                path = f"clips/{name}{suffix}.wav"
                r.clip(out / path, text, fix_voice if fix else voice, espeak=espeak)
                return path

            write_jsonl(out / f"train_{split}{suffix}.jsonl", training_dialogs(split, terms, say, user_checks=espeak is not None))
            files.append(f"train_{split}{suffix}.jsonl")

        # term test sets: 3 held-back sentences per term, other voices; espeak-ng variant
        hib, esp = [], []
        for term in terms:
            for j, s in enumerate(SENTENCES[term][N_TRAIN:]):
                base = f"test_{slug(term, 12)}_{j}"
                r.clip(clips / f"{base}.wav", s, TEST_VOICES[j % len(TEST_VOICES)])
                r.clip(clips / f"{base}_espeak.wav", s, espeak=j)
                hib.append({"audio": f"clips/{base}.wav", "reference": s, "terms": [term]})
                esp.append({"audio": f"clips/{base}_espeak.wav", "reference": s, "terms": [term]})
        write_jsonl(out / f"terms_{split}.jsonl", hib)
        write_jsonl(out / f"terms_{split}_espeak.jsonl", esp)
        files += [f"terms_{split}.jsonl", f"terms_{split}_espeak.jsonl"]

    rows = []
    for i, (term, s) in enumerate(SOUNDALIKE):
        name = f"soundalike_{i:02d}_{slug(s, 24)}.wav"
        r.clip(clips / name, s, MIXED_VOICES[i % len(MIXED_VOICES)])
        rows.append({"audio": f"clips/{name}", "reference": s, "terms": [term]})
    write_jsonl(out / "soundalike.jsonl", rows)
    rows = []
    for i, s in enumerate(GENERAL):
        name = f"general_{i:02d}_{slug(s, 24)}.wav"
        r.clip(clips / name, s, MIXED_VOICES[i % len(MIXED_VOICES)])
        rows.append({"audio": f"clips/{name}", "reference": s})
    write_jsonl(out / "general.jsonl", rows)
    files += ["soundalike.jsonl", "general.jsonl"]
    return files


def build_examples(out: Path, r: Renderer) -> list[str]:
    clips = out / "clips"
    rows = []
    for i, (s, kind) in enumerate(EX_DIALOGS):
        name = f"dialog_{i}.wav"
        r.clip(clips / name, s, TRAIN_VOICE)
        terms = [t for t in EX_TERMS if t in s]
        row = {"audio": f"clips/{name}", "reference": s}
        if kind == "typed":
            row = {"audio": f"clips/{name}", "correction": s, "reference": s, "terms": terms}
        elif kind == "spoken":
            r.clip(clips / f"dialog_{i}_fix.wav", EX_SPOKEN_FIX, FIX_VOICE)
            row = {"audio": f"clips/{name}", "correction_audio": f"clips/dialog_{i}_fix.wav",
                   "correction_text": EX_SPOKEN_FIX, "reference": s, "terms": terms}
        rows.append(row)
    write_jsonl(out / "dialogs.jsonl", rows)
    rows = []
    for i, (s, terms) in enumerate(EX_EVAL):
        name = f"eval_{i}.wav"
        r.clip(clips / name, s, TEST_VOICES[i % len(TEST_VOICES)])
        row = {"audio": f"clips/{name}", "reference": s}
        if terms:
            row["terms"] = terms
        rows.append(row)
    write_jsonl(out / "eval.jsonl", rows)
    return ["dialogs.jsonl", "eval.jsonl"]


def baseline_table(out: Path, files: list[str], verbose: bool = False):
    import jiwer
    import torch
    import whisper
    import whisper.normalizers

    sys.path.insert(0, str(ROOT))
    from ffasr_cli.models import load_model

    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    model = load_model("tiny.en", device="cpu")
    norm = whisper.normalizers.EnglishTextNormalizer()
    opts = whisper.DecodingOptions(language="en", without_timestamps=True, fp16=False)

    def transcribe(path: Path) -> str:
        audio, sr = sf.read(path, dtype="float32")
        assert sr == SR
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio))
        return whisper.decode(model, mel, opts).text

    print(f"\n{'file':28s} {'clips':>5s} {'WER':>6s}  term recall (soundalike: term wrongly present)")
    for name in files:
        rows = [json.loads(line) for line in open(out / name, encoding="utf-8")]
        refs, hyps, hits, n_terms = [], [], 0, 0
        for row in rows:
            hyp = transcribe(out / row["audio"])
            refs.append(norm(row["reference"]))
            hyps.append(norm(hyp))
            if verbose:
                print(f"  {row['audio']}: {hyp.strip()}")
            for term in row.get("terms", []):
                n_terms += 1
                hits += f" {norm(term)} " in f" {norm(hyp)} "
        wer = jiwer.wer(refs, hyps)
        rec = f"{hits}/{n_terms} = {hits / n_terms:.0%}" if n_terms else "-"
        print(f"{name:28s} {len(rows):5d} {wer:6.1%}  {rec}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "data")
    ap.add_argument("--examples", type=Path, metavar="DIR", help="build the small demo set into DIR instead")
    ap.add_argument("--force", action="store_true", help="re-render clips that already exist")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every base transcript")
    ap.add_argument("--no-eval", action="store_true", help="skip the base tiny.en table")
    args = ap.parse_args(argv)
    if shutil.which("espeak-ng") is None and args.examples is None:
        sys.exit("make_speech: espeak-ng is not installed (apt-get install espeak-ng)")
    t0 = time.time()
    r = Renderer(args.force)
    out = args.examples if args.examples is not None else args.out
    files = build_examples(out, r) if args.examples is not None else build_benchmark(out, r)
    r.save_manifests()
    print(f"{out}: {r.rendered} clips rendered, {r.skipped} already there, {time.time() - t0:.1f} s")
    if not args.no_eval:
        t1 = time.time()
        baseline_table(out, files, args.verbose)
        print(f"(base tiny.en, {time.time() - t1:.0f} s)")


if __name__ == "__main__":
    main()
