// Command init is the appliance's PID 1 (see package pid1).
package main

import "keepnet/boot/pid1"

func main() { pid1.Main() }
