// Package raw reads and writes raw disk images: the virtual disk byte for
// byte. The allocation map of a raw file comes from the file system's
// holes (lseek SEEK_DATA/SEEK_HOLE) when the file is an *os.File, and is
// all data otherwise. The writer leaves holes by seeking when the
// destination has random access and writes zeros on a pipe.
package raw
