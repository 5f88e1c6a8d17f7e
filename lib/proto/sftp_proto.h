/* sftp_proto.h: SFTP v3 wire constants (draft-ietf-secsh-filexfer-02), shared by the client
 * (lib/sftp/) and the agent's server (agent/sftp_server*.c). Names follow OpenSSH's sftp.h.
 * Constants only: each side keeps its own limits. */
#ifndef SANDMOUNT_PROTO_SFTP_H
#define SANDMOUNT_PROTO_SFTP_H

#define SSH2_FILEXFER_VERSION 3

/* client to server */
#define SSH2_FXP_INIT	  1
#define SSH2_FXP_OPEN	  3
#define SSH2_FXP_CLOSE	  4
#define SSH2_FXP_READ	  5
#define SSH2_FXP_WRITE	  6
#define SSH2_FXP_LSTAT	  7
#define SSH2_FXP_FSTAT	  8
#define SSH2_FXP_SETSTAT  9
#define SSH2_FXP_FSETSTAT 10
#define SSH2_FXP_OPENDIR  11
#define SSH2_FXP_READDIR  12
#define SSH2_FXP_REMOVE	  13
#define SSH2_FXP_MKDIR	  14
#define SSH2_FXP_RMDIR	  15
#define SSH2_FXP_REALPATH 16
#define SSH2_FXP_STAT	  17
#define SSH2_FXP_RENAME	  18
#define SSH2_FXP_READLINK 19
#define SSH2_FXP_SYMLINK  20
#define SSH2_FXP_EXTENDED 200

/* server to client */
#define SSH2_FXP_VERSION	2
#define SSH2_FXP_STATUS		101
#define SSH2_FXP_HANDLE		102
#define SSH2_FXP_DATA		103
#define SSH2_FXP_NAME		104
#define SSH2_FXP_ATTRS		105
#define SSH2_FXP_EXTENDED_REPLY 201

/* attribute flags */
#define SSH2_FILEXFER_ATTR_SIZE	       0x00000001
#define SSH2_FILEXFER_ATTR_UIDGID      0x00000002
#define SSH2_FILEXFER_ATTR_PERMISSIONS 0x00000004
#define SSH2_FILEXFER_ATTR_ACMODTIME   0x00000008
#define SSH2_FILEXFER_ATTR_EXTENDED    0x80000000

/* open flags */
#define SSH2_FXF_READ	0x00000001
#define SSH2_FXF_WRITE	0x00000002
#define SSH2_FXF_APPEND 0x00000004
#define SSH2_FXF_CREAT	0x00000008
#define SSH2_FXF_TRUNC	0x00000010
#define SSH2_FXF_EXCL	0x00000020

/* statvfs@openssh.com f_flag bits */
#define SSH2_FXE_STATVFS_ST_RDONLY 0x00000001
#define SSH2_FXE_STATVFS_ST_NOSUID 0x00000002

/* status codes */
#define SSH2_FX_OK		  0
#define SSH2_FX_EOF		  1
#define SSH2_FX_NO_SUCH_FILE	  2
#define SSH2_FX_PERMISSION_DENIED 3
#define SSH2_FX_FAILURE		  4
#define SSH2_FX_BAD_MESSAGE	  5
#define SSH2_FX_NO_CONNECTION	  6
#define SSH2_FX_CONNECTION_LOST	  7
#define SSH2_FX_OP_UNSUPPORTED	  8
#define SSH2_FX_MAX		  8

/* ---- sandmount-agent extensions (advertised in VERSION with version "1"; a client uses them
 * only when advertised, so plain OpenSSH sftp-server works as plain SFTP v3) ----
 *
 * "stat@sandmount": the full stat. An extended attribute pair (SSH2_FILEXFER_ATTR_EXTENDED)
 * with that name; its data is exactly SM_STAT_LEN bytes:
 *   u32 valid (SM_STAT_* bits), u64 dev, u64 ino, u64 nlink, u64 rdev,
 *   atime, mtime, ctime: each u64 seconds (two's complement) and u32 nanoseconds.
 * The agent adds it to every attribute block it sends (ATTRS, READDIR entries), next to the
 * v3 size, uid/gid, permissions and times. A client adds it to SETSTAT, FSETSTAT and
 * lsetstat@openssh.com to set times with nanoseconds (SM_STAT_TIMES; utimensat semantics:
 * nanoseconds may be SM_NSEC_NOW or SM_NSEC_OMIT); the other fields are ignored there.
 *
 * "mknod@sandmount": request string path, u32 mode (file type and permissions, Linux S_IF*
 * values), u64 rdev; a STATUS reply. Makes FIFOs, sockets and, where permitted, devices.
 *
 * "open-read@sandmount": request string path, u32 len. Opens a regular file for reading and
 * reads its first bytes in the same trip: an EXTENDED_REPLY with string handle, the file's
 * attributes (as in ATTRS, of the open file), string data (at most len bytes from offset 0;
 * fewer means the end of the file was reached). A STATUS reply when the open or the read failed
 * (nothing stays open then); len is capped at the server's read maximum.
 *
 * "list@sandmount": request string path. Opens the directory and sends as many of its entries
 * as fit in the same reply: an EXTENDED_REPLY with u32 flags (SM_LIST_*), string handle (empty
 * when SM_LIST_COMPLETE: every entry is in this reply and nothing stays open; otherwise an open
 * directory handle the client continues with READDIR and CLOSEs), u32 count, then count entries
 * exactly as in a NAME reply (string filename, string longname, attrs with the stat@sandmount
 * pair). A STATUS reply when the open fails, as OPENDIR's. The server stops adding entries at
 * SM_LIST_MAX_BYTES of reply or SM_LIST_MAX_ENTRIES entries; an entry read but not sent is the
 * first one READDIR returns.
 *
 * "read-files@sandmount": request string dir, u32 max_file, string after. Reads the small
 * regular files of one directory in one trip (the daemon's prefetch, fs/prefetch.c): an
 * EXTENDED_REPLY with string resume, u32 count, then count entries: string name, attrs (as in
 * ATTRS, of the open file), string data (the whole file). Entries are taken in the directory's
 * order, starting after the entry named `after` (from the start when empty; nothing when that
 * name is not there); a file larger than max_file (capped at SM_READ_FILES_MAX_FILE), one that
 * is not regular, cannot be opened or changed while it was read is left out. The server stops
 * at SM_READ_FILES_MAX_BYTES of reply, SM_READ_FILES_MAX_ENTRIES entries or SM_READ_FILES_SCAN
 * names looked at; `resume` names the last name looked at then (the next request's `after`),
 * and is empty when the directory was read to its end. A STATUS reply when the directory
 * cannot be opened. */
#define SM_EXT_STAT	  "stat@sandmount"
#define SM_EXT_MKNOD	  "mknod@sandmount"
#define SM_EXT_OPEN_READ  "open-read@sandmount"
#define SM_EXT_LIST	  "list@sandmount"
#define SM_EXT_READ_FILES "read-files@sandmount"

#define SM_READ_FILES_MAX_FILE	  (64 * 1024)
#define SM_READ_FILES_MAX_BYTES	  (192 * 1024)
#define SM_READ_FILES_MAX_ENTRIES 1024
#define SM_READ_FILES_SCAN	  4096

#define SM_LIST_COMPLETE    0x01
#define SM_LIST_MAX_BYTES   (192 * 1024)
#define SM_LIST_MAX_ENTRIES 4096

#define SM_STAT_DEVINO 0x01 /* dev, ino */
#define SM_STAT_NLINK  0x02
#define SM_STAT_RDEV   0x04
#define SM_STAT_TIMES  0x08 /* atime and mtime with nanoseconds */
#define SM_STAT_CTIME  0x10
#define SM_STAT_LEN    (4 + 4 * 8 + 3 * 12)

#define SM_NSEC_NOW  0x3fffffff /* as Linux's UTIME_NOW */
#define SM_NSEC_OMIT 0x3ffffffe /* as Linux's UTIME_OMIT */

#endif
