#!/bin/sh
# maclist.sh: a sample pxebootfs content generator, written to the interface
# of atftpd's --content-generator patch, so it works with either.
#
# It serves one file, "maclist": a shell script for a wireless router that
# allows the MACs of the wireless interfaces in a database (here the flat
# file maclist.db beside this script; a real one would query SQL). For any
# other name it exits 1, which pxebootfs serves as "file not found", so
# pxelinux's probes for UUIDs and hex prefixes fall through as usual.
#
# It is run (directly, not through a shell) as
#   maclist.sh --file FULLPATH [--ip IP] [--mac MAC] [--node NODE]
# with file descriptor 3 open for the content. Arguments it does not know
# are ignored, as the interface requires. FULLPATH is the path the tftpd
# asked for (e.g. /srv/tftp/pxelinux.cfg/maclist): only its last component
# matters here.

file= ip= mac=
while [ $# -gt 0 ]; do
	case $1 in
	--file) file=${2-}; shift ;;
	--ip) ip=${2-}; shift ;;
	--mac) mac=${2-}; shift ;;
	*) ;; # unknown: ignore
	esac
	[ $# -gt 0 ] && shift
done

[ "${file##*/}" = maclist ] || exit 1

db=${0%/*}/maclist.db
macs=$(awk '$1 !~ /^#/ && $2 == "wireless" { printf "%s%s", sep, $1; sep = " " }' "$db") || exit 1
if [ -z "$macs" ]; then
	echo "maclist.sh: no wireless interfaces in $db" >&2
	exit 1
fi

{
	echo '#!/bin/sh'
	echo '# Shellscript generated from infra database'
	echo '# Do not edit by hand'
	[ -n "$mac$ip" ] && echo "# requested by ${mac:-?} ${ip:-?}"
	echo
	echo 'wl mac none'
	echo "wl mac $macs 00:00:00:00:00:00"
} >&3
