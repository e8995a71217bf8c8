"""An index run: walk, plan, decode, embed, write, then the index."""
