/// Redis Cluster's key-to-slot mapping: CRC16 (XMODEM: polynomial 0x1021, initial value 0) of the key's hash
/// tag, modulo 16384.
///
/// The hash tag is the part between the first `{` and the first `}` after it, when that part is not empty;
/// otherwise the whole key is hashed. So `quotakeeper:{m@r}:ledger` and `quotakeeper:{m@r}:leases` share a slot.
package enum HashSlot {
    /// The number of slots of a Redis Cluster.
    package static let count = 16384

    /// The slot of a key given as text.
    package static func slot(of key: String) -> Int {
        slot(of: Array(key.utf8)[...])
    }

    /// The slot of a key given as bytes.
    package static func slot(of key: ArraySlice<UInt8>) -> Int {
        Int(crc16(hashTag(of: key)) & UInt16(count - 1))
    }

    /// The bytes that are hashed: the non-empty text between the first `{` and the next `}`, or the whole key.
    static func hashTag(of key: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        guard let open = key.firstIndex(of: UInt8(ascii: "{")),
              let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")),
              close > open + 1
        else { return key }
        return key[(open + 1)..<close]
    }

    /// CRC16/XMODEM, table-driven (one lookup per byte).
    static func crc16(_ bytes: ArraySlice<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ byte)]
        }
        return crc
    }

    private static let table: [UInt16] = (0..<256).map { index in
        var value = UInt16(index) << 8
        for _ in 0..<8 {
            value = value & 0x8000 != 0 ? (value << 1) ^ 0x1021 : value << 1
        }
        return value
    }
}
