"""The verdict cache (diskcache) and its key."""
