// Package imagetest holds helpers for the image tests: random sparse disk
// contents, running qemu-img (the independent reference), reading a whole
// image, and comparing allocation maps.
package imagetest
