"""The FAISS memory bank of silent-video embeddings. Takes arrays/tensors and ids; imports no other package of ours."""
