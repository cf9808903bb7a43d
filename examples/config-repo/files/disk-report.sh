#!/bin/sh
# Print file systems over 80 % full.
df -P | awk 'NR > 1 && $5 + 0 > 80 { print $6 " is " $5 " full" }'
