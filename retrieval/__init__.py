"""The FAISS memory bank of silent-video embeddings. Takes arrays/tensors and ids; of our packages it imports only ``ophbase``.

from retrieval import MemoryBank, BankHolder
"""

from .bank import BankHolder, MemoryBank, SearchResult
from .errors import MemoryBankError
from .gpu import gpu_available, num_gpus
from .indexes import INDEX_KINDS
from .metrics import label_agreement

__all__ = [
    "BankHolder",
    "INDEX_KINDS",
    "MemoryBank",
    "MemoryBankError",
    "SearchResult",
    "gpu_available",
    "label_agreement",
    "num_gpus",
]
