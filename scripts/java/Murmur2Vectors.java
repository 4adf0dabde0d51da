// Golden vectors for Java-compatible key partitioning.
//
// Prints `key_hex,partitions,partition` rows computed with the real Kafka client code:
//   org.apache.kafka.common.utils.Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions
// which is exactly what the Java producer's BuiltInPartitioner.partitionForKey (and the older
// DefaultPartitioner) does for a non-null key.
//
// Run from the repository root (single-file source launch, Java 11+):
//   java -cp '.cache/kafka-4.1.1/lib/*' scripts/java/Murmur2Vectors.java \
//     > crates/producer/tests/fixtures/murmur2_vectors.csv
// The output is committed; crates/producer tests check the Rust murmur2 and librdkafka's
// `partitioner=murmur2_random` against it.
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
import org.apache.kafka.common.utils.Utils;

public class Murmur2Vectors {
    private static final int[] PARTITION_COUNTS = {1, 3, 6, 12, 100};

    private static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder(b.length * 2);
        for (byte x : b) {
            sb.append(String.format("%02x", x & 0xff));
        }
        return sb.toString();
    }

    public static void main(String[] args) {
        List<byte[]> keys = new ArrayList<>();
        // Empty key (non-null, zero bytes): Java hashes it; null keys are not partitioned by hash.
        keys.add(new byte[0]);
        // ASCII order ids of every tail length (len % 4 = 0..3) and realistic shapes.
        for (String s : new String[] {
                "a", "ab", "abc", "abcd", "abcde", "abcdef", "abcdefg", "abcdefgh",
                "0", "1", "42", "order-1", "order-2", "order-3", "order-10", "order-42",
                "order-999", "order-000001", "order-123456789",
                "ORD-2024-000001", "ORD-2024-999999",
                "c0a80101-7e57-4d1e-9b3a-3f1f2a6b9e01",
                "550e8400-e29b-41d4-a716-446655440000",
                "customer-7/order-19", " leading space", "trailing space ", "tab\tkey",
                "key,with,commas", "key\"quote"}) {
            keys.add(utf8(s));
        }
        for (int i = 0; i < 40; i++) {
            keys.add(utf8(String.format("order-%06d", i * 7919)));
        }
        // Non-ASCII UTF-8: Cyrillic, CJK, emoji (4-byte sequences), combining marks.
        for (String s : new String[] {
                "заказ-1", "заказ-42", "注文-42", "订单-7", "주문-3", "طلب-9", "commande-é",
                "e\u0301", "🛒", "🛒-order-7", "📦🚚✅", "ß", "Ω"}) {
            keys.add(utf8(s));
        }
        // Binary bytes: zeros, 0xff, every tail length with high-bit bytes (sign handling).
        keys.add(new byte[] {0});
        keys.add(new byte[] {0, 0});
        keys.add(new byte[] {0, 0, 0});
        keys.add(new byte[] {0, 0, 0, 0});
        keys.add(new byte[] {(byte) 0xff});
        keys.add(new byte[] {(byte) 0xff, (byte) 0xff});
        keys.add(new byte[] {(byte) 0xff, (byte) 0xff, (byte) 0xff});
        keys.add(new byte[] {(byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0xff});
        keys.add(new byte[] {(byte) 0x80, 0x7f, (byte) 0x80, 0x7f, (byte) 0x80});
        keys.add(new byte[] {(byte) 0xde, (byte) 0xad, (byte) 0xbe, (byte) 0xef});
        byte[] all = new byte[256];
        for (int i = 0; i < 256; i++) {
            all[i] = (byte) i;
        }
        keys.add(all);
        // java.util.Random is a specified LCG: the same seed gives the same bytes on every JVM.
        Random rnd = new Random(20240917L);
        for (int i = 0; i < 24; i++) {
            byte[] b = new byte[1 + rnd.nextInt(40)];
            rnd.nextBytes(b);
            keys.add(b);
        }
        // Long keys.
        keys.add(utf8("order-" + "x".repeat(250)));
        keys.add(utf8("заказ-".repeat(100)));
        byte[] big = new byte[4099];
        rnd.nextBytes(big);
        keys.add(big);

        StringBuilder out = new StringBuilder("key_hex,partitions,partition\n");
        for (byte[] key : keys) {
            for (int n : PARTITION_COUNTS) {
                int expected = Utils.toPositive(Utils.murmur2(key)) % n;
                // Cross-check against the producer's own code path (Kafka 3.3+).
                int viaPartitioner = BuiltInPartitioner.partitionForKey(key, n);
                if (expected != viaPartitioner) {
                    throw new IllegalStateException("BuiltInPartitioner disagrees for " + hex(key));
                }
                out.append(hex(key)).append(',').append(n).append(',').append(expected).append('\n');
            }
        }
        System.out.print(out);
    }
}
