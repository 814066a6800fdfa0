"""FUSE frontend (mfusepy): mounts a workspace over the VFS inode API."""
