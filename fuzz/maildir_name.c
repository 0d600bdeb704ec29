/*
 * fuzz/maildir_name.c - libFuzzer harness for the Maildir file-name parser:
 * unique part (info after ":", ";2," or "!2,"), ",W=" and ",S=" sizes,
 * delivery time, UIDL (also of a twin) and the Seen-flag rename. It includes
 * maildir.c to reach those static functions. Invariants: a UIDL is 1-70
 * octets of 0x21-0x7E; a seen name keeps the unique part and its info
 * separator, and has an S.
 */
#include "../maildir.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char name[NAME_MAX + 1], uidl[UIDL_LEN], seen[8 + NAME_MAX + 1];
	struct maildrop md;
	struct msg m;
	uint64_t w;
	size_t i, n = size < NAME_MAX ? size : NAME_MAX;

	for (i = 0; i < n && data[i] != '\0'; i++)
		name[i] = data[i] == '/' ? '_' : (char)data[i];
	name[i] = '\0';
	if (name[0] == '\0')
		return 0;
	maildrop_init(&md);
	memset(&m, 0, sizeof(m));
	m.in_new = n % 2;
	md.msgs = &m;
	md.count = 1;
	if (store_name(&md, name) != 0)
		abort();
	(void)delivery_time(name);
	if (name_size(name, &w) == 0 && strstr(name, ",W=") == NULL)
		abort();
	if (name_stored(name) >= 0 && strstr(name, ",S=") == NULL)
		abort();
	m.twin = size % 3 == 0;
	m.ino = size;
	maildir_uidl(&md, 0, uidl);
	if (strlen(uidl) < 1 || strlen(uidl) > 70)
		abort();
	for (i = 0; uidl[i] != '\0'; i++)
		if (uidl[i] < 0x21 || uidl[i] > 0x7e)
			abort();
	if (seen_name(&md, 0, seen, sizeof(seen)) == 0) {
		const char *info = info_of(seen + 4), *old = info_of(name);

		if (strncmp(seen, "cur/", 4) != 0 || info[0] == '\0' || info[1] != '2' ||
		    info[2] != ',' || strchr(info + 3, 'S') == NULL ||
		    unique_len(seen + 4) != unique_len(name) ||
		    memcmp(seen + 4, name, unique_len(name)) != 0 ||
		    (old[0] != '\0' && old[0] != info[0]))
			abort();
	}
	free(md.names);
	return 0;
}
