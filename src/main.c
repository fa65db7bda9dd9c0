// main.c: placeholder CLI entry; the foundation work replaces it with the command table.
#include <stdio.h>
int main(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "lola: not built yet\n");
    return 1;
}
