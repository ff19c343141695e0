"""Protocol constants, named as in subspace-core-primitives (protocol.md §1)."""

from __future__ import annotations

from autonomys_farmer.protocol.field import FIELD_ELEMENT_BYTES, SAFE_BYTES

# Records and pieces
RECORD_NUM_CHUNKS = 32768  # Record::NUM_CHUNKS
RECORD_NUM_S_BUCKETS = 65536  # Record::NUM_S_BUCKETS (erasure rate 1/2)
RAW_RECORD_SIZE = SAFE_BYTES * RECORD_NUM_CHUNKS  # 1,015,808
RECORD_SIZE = FIELD_ELEMENT_BYTES * RECORD_NUM_CHUNKS  # 1 MiB
COMMITMENT_SIZE = 48  # RecordCommitment / RecordWitness / ChunkWitness / SegmentCommitment
PIECE_SIZE = RECORD_SIZE + 2 * COMMITMENT_SIZE  # 1,048,672

# Segments
NUM_RAW_RECORDS = 128  # RecordedHistorySegment::NUM_RAW_RECORDS
NUM_PIECES = 256  # ArchivedHistorySegment::NUM_PIECES (source at even positions, parity at odd)
RECORDED_HISTORY_SEGMENT_SIZE = NUM_RAW_RECORDS * RAW_RECORD_SIZE  # 130,023,424

# Other sizes
PUBLIC_KEY_SIZE = 32
REWARD_SIGNATURE_SIZE = 64
POT_OUTPUT_SIZE = 16
SOLUTION_SCALE_SIZE = 412
REWARD_SIGNING_CONTEXT = b"subspace_reward"

# Sector layout
S_BUCKET_BITFIELD_BYTES = RECORD_NUM_S_BUCKETS // 8  # 8192 per record
RECORD_METADATA_SIZE = 2 * COMMITMENT_SIZE + 32  # commitment ‖ witness ‖ piece checksum
CHECKSUM_SIZE = 32
SECTOR_METADATA_SIZE = 2 + 2 + 2 * RECORD_NUM_S_BUCKETS + 8  # 131,084
SECTOR_METADATA_CHECKSUMMED_SIZE = SECTOR_METADATA_SIZE + CHECKSUM_SIZE  # 131,116

# Mainnet chain constants (runtime)
MAX_PIECES_IN_SECTOR = 1000
RECENT_SEGMENTS = 5
RECENT_HISTORY_FRACTION = (1, 10)
MIN_SECTOR_LIFETIME = 4
SLOT_PROBABILITY = (1, 6)
BLOCK_AUTHORING_DELAY = 4

U64_MAX = 2**64 - 1
