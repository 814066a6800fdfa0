"""Agent file-operation API: readFile, writeFile, appendFile, ... over the VFS."""
