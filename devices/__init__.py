"""devices: bedside hardware — the PTZ camera (VISCA) and vital-sign monitors (HL7/MLLP, serial).

Protocol cores are sans-I/O (bytes in, events out, ``now`` passed in); thin asyncio
shells drive them. Devices publish readings through callbacks; they import nothing
from mediaserver, signaling, recorder or consult_api.
"""
