// Package sd is proxypool's side of the systemd service protocol: sd_notify
// (READY, STATUS, RELOADING, STOPPING, WATCHDOG only while healthy) and
// socket-activated listeners matched by FileDescriptorName, with a fallback
// to listening itself when the process was not socket-activated. Every
// function is a no-op outside systemd.
package sd
