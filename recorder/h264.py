"""H.264 over RTP (RFC 6184, packetization mode 1) to Annex B access units, and SPS sizes."""

from __future__ import annotations

from recorder.depacketizer import EncodedFrame, FrameAssembler
from recorder.errors import DepacketizeError

CLOCK_RATE = 90000
START_CODE = b"\x00\x00\x00\x01"
NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9
NAL_STAP_A = 24
NAL_FU_A = 28
HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def split_payload(payload: bytes) -> list[bytes]:
    """The NAL units of a single-NAL or STAP-A payload (FU-A is handled by the caller)."""
    if not payload:
        raise DepacketizeError("empty H.264 payload")
    nal_type = payload[0] & 0x1F
    if 1 <= nal_type <= 23:
        return [payload]
    if nal_type != NAL_STAP_A:
        raise DepacketizeError(f"unsupported H.264 NAL unit type {nal_type}")
    units = []
    offset = 1
    while offset < len(payload):
        if offset + 2 > len(payload):
            raise DepacketizeError("STAP-A length field truncated")
        size = int.from_bytes(payload[offset:offset + 2], "big")
        offset += 2
        if size == 0 or offset + size > len(payload):
            raise DepacketizeError("STAP-A unit truncated")
        units.append(payload[offset:offset + size])
        offset += size
    return units


def starts_access_unit(nal: bytes) -> bool:
    """True for a NAL unit that may open an access unit: AUD/SEI/SPS/PPS or a first slice."""
    nal_type = nal[0] & 0x1F
    if nal_type in (NAL_SEI, NAL_SPS, NAL_PPS, NAL_AUD):
        return True
    # first_mb_in_slice is ue(v); a leading 1 bit encodes 0, the picture's first slice.
    return nal_type in (NAL_SLICE, NAL_IDR) and len(nal) > 1 and bool(nal[1] & 0x80)


class _BitReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def bit(self) -> int:
        if self.pos >= len(self.data) * 8:
            raise DepacketizeError("SPS truncated")
        value = (self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return value

    def bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while not self.bit():
            zeros += 1
            if zeros > 31:
                raise DepacketizeError("SPS has an invalid exp-Golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


def unescape(rbsp: bytes) -> bytes:
    """Remove emulation-prevention bytes (00 00 03 -> 00 00)."""
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _skip_scaling_list(reader: _BitReader, size: int) -> None:
    last = next_scale = 8
    for _ in range(size):
        if next_scale:
            next_scale = (last + reader.se() + 256) % 256
        last = next_scale or last


def sps_size(sps: bytes) -> tuple[int, int]:
    """Picture width and height (after cropping) from an SPS NAL unit, header included."""
    if not sps or sps[0] & 0x1F != NAL_SPS:
        raise DepacketizeError("not an SPS NAL unit")
    r = _BitReader(unescape(sps[1:]))
    profile_idc = r.bits(8)
    r.bits(16)  # constraint flags, level_idc
    r.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    separate_colour_plane = 0
    if profile_idc in HIGH_PROFILES:
        chroma_format_idc = r.ue()
        if chroma_format_idc == 3:
            separate_colour_plane = r.bit()
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.bit()  # qpprime_y_zero_transform_bypass_flag
        if r.bit():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.bit():
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        r.bit()
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.bit()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_units = r.ue() + 1
    frame_mbs_only = r.bit()
    if not frame_mbs_only:
        r.bit()  # mb_adaptive_frame_field_flag
    r.bit()  # direct_8x8_inference_flag
    crop = (r.ue(), r.ue(), r.ue(), r.ue()) if r.bit() else (0, 0, 0, 0)
    chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
    if chroma_array_type == 0:
        unit_x, unit_y = 1, 2 - frame_mbs_only
    else:
        sub_width = 2 if chroma_array_type in (1, 2) else 1
        sub_height = 2 if chroma_array_type == 1 else 1
        unit_x, unit_y = sub_width, sub_height * (2 - frame_mbs_only)
    width = width_mbs * 16 - unit_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * height_units * 16 - unit_y * (crop[2] + crop[3])
    if width <= 0 or height <= 0:
        raise DepacketizeError("SPS describes an empty picture")
    return width, height


class H264Depacketizer(FrameAssembler):
    """Reassembles access units (one RTP timestamp, up to the marker bit) in Annex B.

    Keeps the latest SPS and PPS and puts them in front of an IDR picture that was
    sent without them, so that every keyframe written is decodable on its own.
    """

    clock_rate = CLOCK_RATE

    def __init__(self) -> None:
        self.sps: bytes | None = None
        self.pps: bytes | None = None
        super().__init__()

    def _reset_frame(self) -> None:
        self._nals: list[bytes] = []
        self._fragment: bytearray | None = None

    def _frame_ready(self) -> bool:
        return self._fragment is None and bool(self._nals)

    def _add_nal(self, nal: bytes) -> None:
        if not self._nals and not self._started:
            self._started = starts_access_unit(nal)
            if not self._started:
                self._broken = True  # the access unit's first packets are missing
        self._nals.append(nal)

    def _add_payload(self, payload: bytes) -> None:
        if payload[0] & 0x1F != NAL_FU_A:
            if self._fragment is not None:
                self._fragment = None
                raise DepacketizeError("FU-A interrupted before its end fragment")
            for nal in split_payload(payload):
                self._add_nal(nal)
            return
        if len(payload) < 3:
            raise DepacketizeError("FU-A payload too short")
        indicator, header = payload[0], payload[1]
        if header & 0x80:  # start fragment: rebuild the NAL header
            if self._fragment is not None:
                self._fragment = None
                raise DepacketizeError("FU-A started twice")
            self._fragment = bytearray([(indicator & 0xE0) | (header & 0x1F)])
        elif self._fragment is None:
            raise DepacketizeError("FU-A continues a fragment whose start was lost")
        self._fragment += payload[2:]
        if header & 0x40:  # end fragment
            nal, self._fragment = bytes(self._fragment), None
            self._add_nal(nal)

    def _emit(self, timestamp: int, after_loss: bool, arrival: float) -> EncodedFrame:
        nals = self._nals
        types = {nal[0] & 0x1F for nal in nals}
        for nal in nals:
            if nal[0] & 0x1F == NAL_SPS:
                self.sps = nal
            elif nal[0] & 0x1F == NAL_PPS:
                self.pps = nal
        keyframe = NAL_IDR in types
        size = None
        if keyframe:
            if NAL_SPS not in types and self.sps is not None and self.pps is not None:
                nals = [self.sps, self.pps, *nals]
            elif NAL_SPS not in types:
                keyframe = False  # no parameter sets yet: not decodable on its own
            if keyframe and self.sps is not None:
                try:
                    size = sps_size(self.sps)
                except DepacketizeError:
                    keyframe = False
        data = b"".join(START_CODE + nal for nal in nals)
        return EncodedFrame(timestamp, data, keyframe, after_loss, arrival, size)
