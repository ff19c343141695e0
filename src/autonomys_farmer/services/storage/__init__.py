"""What is kept on disk and where pieces come from: farms, the piece cache store, the piece getter."""
