/* mount_limits.h: the per-mount bounds on everything a sandbox controls — sizes and counts it sends
 * that would otherwise make the daemon grow without end. Set with -o KEY=N (or the config file's
 * "options"), shown by `sandmount --status`, documented in sandmount(1), LIMITS. Plain data: the
 * SFTP client enforces them; config.c parses them. */
#ifndef SANDMOUNT_MOUNT_LIMITS_H
#define SANDMOUNT_MOUNT_LIMITS_H

#include <stdint.h>

struct mount_limits {
	uint64_t max_dir_entries;   /* entries one directory listing may have */
	uint64_t max_listing_bytes; /* wire bytes one directory listing may take */
	uint64_t max_name;	    /* bytes of one file name (longer names are skipped) */
	uint64_t max_link_target;   /* bytes of one symlink target */
	uint64_t max_packet;	    /* bytes of one SFTP packet from the sandbox */
	uint64_t max_inflight;	    /* SFTP requests left unanswered before the link is dropped */
};

/* Defaults: a node_modules directory has a few thousand entries; a listing of 200,000 names
 * (about 40 MiB on the wire from OpenSSH) is far past any real workspace. */
#define LIMIT_DEF_DIR_ENTRIES	200000
#define LIMIT_DEF_LISTING_BYTES (64ull << 20)
#define LIMIT_DEF_NAME		255
#define LIMIT_DEF_LINK_TARGET	4096
#define LIMIT_DEF_PACKET	(1024 * 1024)
#define LIMIT_DEF_INFLIGHT	4096

static inline struct mount_limits mount_limits_default(void)
{
	return (struct mount_limits){
	    .max_dir_entries = LIMIT_DEF_DIR_ENTRIES,
	    .max_listing_bytes = LIMIT_DEF_LISTING_BYTES,
	    .max_name = LIMIT_DEF_NAME,
	    .max_link_target = LIMIT_DEF_LINK_TARGET,
	    .max_packet = LIMIT_DEF_PACKET,
	    .max_inflight = LIMIT_DEF_INFLIGHT,
	};
}

#endif
