//! Pure rendering of the branch's printed documents (invoice, receipt, delivery note, pairing QR,
//! at a rental's handover the rental agreement and its surat jalan, at its return the rental
//! invoice, and the day's Z-report)
//! to the ESC/POS bytes a thermal printer understands. No I/O, no clock: the same document, layout
//! and reprint flag always give the same bytes, which is what the golden files check.
//!
//! We emit a small ESC/POS subset ourselves (initialise, code page, alignment, bold, character
//! size, QR code via `GS ( k`, feed and cut) rather than build through the `escpos` crate: its
//! printer type owns a blocking driver, while the worker needs the bytes first (to prepend the
//! reprint mark, to compare with golden files, to write them through its own async transports).
//!
//! Text is printed as plain ASCII: every ESC/POS printer's default code page (PC437) has it, while
//! the code-page tables of the cheap 58 mm printers common in Indonesian shops differ from make to
//! make. Indonesian is written in the Latin alphabet without diacritics, so ASCII loses nothing
//! for Indonesian words; accented letters in names are transliterated (é → e) and anything else
//! becomes `?`.

use time::{OffsetDateTime, UtcOffset};

use crate::store::billing::Invoice;
use crate::store::rentals::{RentalInvoice, RentalPayment};

/// ESC/POS command bytes we use.
mod cmd {
    pub const INIT: &[u8] = b"\x1b@";
    /// ESC t 0: code page PC437 (ASCII in its lower half).
    pub const CODE_PAGE_PC437: &[u8] = b"\x1bt\x00";
    pub const ALIGN_LEFT: &[u8] = b"\x1ba\x00";
    pub const ALIGN_CENTER: &[u8] = b"\x1ba\x01";
    pub const BOLD_ON: &[u8] = b"\x1bE\x01";
    pub const BOLD_OFF: &[u8] = b"\x1bE\x00";
    /// GS ! n: character size; 0x01 is double height (the line keeps its column count).
    pub const SIZE_NORMAL: &[u8] = b"\x1d!\x00";
    pub const SIZE_DOUBLE_HEIGHT: &[u8] = b"\x1d!\x01";
    /// ESC d 4: feed four lines so the last line clears the cutter.
    pub const FEED_BEFORE_CUT: &[u8] = b"\x1bd\x04";
    /// GS V 66 0: feed to the cut position and cut partially.
    pub const CUT: &[u8] = b"\x1dVB\x00";
}

/// Paper widths the branch printers use, as character columns of font A.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaperWidth {
    /// 58 mm paper: 32 columns.
    Mm58,
    /// 80 mm paper: 48 columns.
    Mm80,
}

impl PaperWidth {
    pub fn columns(self) -> usize {
        match self {
            PaperWidth::Mm58 => 32,
            PaperWidth::Mm80 => 48,
        }
    }

    pub fn parse(s: &str) -> Result<PaperWidth, String> {
        match s.trim() {
            "58" => Ok(PaperWidth::Mm58),
            "80" => Ok(PaperWidth::Mm80),
            _ => Err("expected 58 or 80 (paper width in mm)".into()),
        }
    }

    pub fn as_mm(self) -> u32 {
        match self {
            PaperWidth::Mm58 => 58,
            PaperWidth::Mm80 => 80,
        }
    }

    /// QR module size in dots: a pairing code must scan from a tablet camera at arm's length.
    fn qr_module(self) -> u8 {
        match self {
            PaperWidth::Mm58 => 5,
            PaperWidth::Mm80 => 7,
        }
    }
}

/// What every document carries at its top: the branch, from the `[branch]` and `[printer]` config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub width: PaperWidth,
    pub branch_name: String,
    /// Extra header lines (address, phone, NPWP), from `printer.header`; `|` separates lines.
    pub header: Vec<String>,
    pub utc_offset: UtcOffset,
}

/// One printable document, with everything it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    Invoice(InvoiceDoc),
    Receipt(InvoiceDoc),
    DeliveryNote(DeliveryNote),
    PairingQr(PairingQr),
    /// Perjanjian sewa: what the customer signs at a rental's handover.
    RentalAgreement(RentalPaper),
    /// Surat jalan of a rental: the asset leaves with the customer.
    RentalDeliveryNote(RentalPaper),
    /// Laporan Z: a branch day's close (its shifts, money by method, cash counted).
    ZReport(ZReport),
    /// Faktur sewa: a rental's invoice at its return, with the deposit settled against it.
    RentalInvoice(RentalInvoiceDoc),
}

/// What a rental invoice shows: the invoice, the rental it bills and its money rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RentalInvoiceDoc {
    pub agreement_number: String,
    pub customer: String,
    pub asset_name: String,
    pub plate: String,
    pub invoice: RentalInvoice,
    /// Deposit, payments and refunds (a refund negative), in the order taken.
    pub payments: Vec<RentalPayment>,
}

/// What a Z-report shows: the closed day (`store::staff::Day`) with its staff's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZReport {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub closed_at: String,
    pub manager: String,
    pub shifts: Vec<ZShift>,
    /// Cash, EDC, QRIS (rupiah).
    pub totals: (i64, i64, i64),
    pub expected_cash: i64,
    pub counted_cash: i64,
    pub difference: i64,
    pub reason: Option<String>,
}

/// One closed shift on a Z-report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZShift {
    pub cashier: String,
    pub opened_at: String,
    pub closed_at: String,
    pub opening_float: i64,
    pub expected_cash: i64,
    pub counted_cash: i64,
    pub difference: i64,
    pub reason: Option<String>,
}

/// What a rental's handover papers show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RentalPaper {
    pub agreement_number: String,
    pub booking_id: String,
    pub customer: String,
    pub asset_id: String,
    pub asset_name: String,
    pub plate: String,
    /// First and last booked day (`YYYY-MM-DD`); the last is the agreed return day.
    pub from: String,
    pub to: String,
    pub days: i64,
    pub daily_rate: i64,
    /// The tariff's deposit.
    pub deposit: i64,
    /// The deposit taken: (method, amount, reference).
    pub deposit_paid: Vec<(String, i64, Option<String>)>,
    pub late_fee_per_day: i64,
    /// When the asset was handed over (RFC 3339).
    pub handed_over_at: String,
    pub inspection_id: String,
    pub inspection_hash: String,
    pub photo_count: i64,
    pub odometer_km: Option<i64>,
    pub fuel_percent: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceDoc {
    pub invoice: Invoice,
    pub customer_name: String,
    pub vehicle_plate: String,
}

/// Surat jalan: the parts that leave with a work order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryNote {
    pub work_order_id: String,
    pub customer_name: String,
    pub vehicle_plate: String,
    /// When the work order was created (RFC 3339).
    pub date: String,
    pub lines: Vec<DeliveryLine>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryLine {
    pub sku: String,
    pub name: String,
    pub qty: i64,
    pub unit: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingQr {
    pub branch_id: String,
    pub code: String,
    pub role: String,
    pub expires_at: String,
    /// `sentra://pair?url=https://<host>:<port>&code=<code>&fp=sha256:<hex>`.
    pub uri: Option<String>,
}

impl PairingQr {
    /// What the QR code holds: the pairing URI (the box's URL, the one-time code a tablet's app
    /// sends as `POST /v1/pair`, and the certificate fingerprint it pins). A job queued by an
    /// older release has none: then the branch and the code, as it printed then.
    pub fn payload(&self) -> String {
        match &self.uri {
            Some(uri) => uri.clone(),
            None => format!("SENTRA-PAIR:{}:{}", self.branch_id, self.code),
        }
    }
}

/// The mark printed at the top and bottom of every copy after the first attempt.
pub const REPRINT_MARK: &str = "*** CETAK ULANG / REPRINT ***";

/// Render `doc` for `layout`. `reprint` marks the paper as a second (or later) copy.
pub fn render(doc: &Document, layout: &Layout, reprint: bool) -> Vec<u8> {
    let mut p = Page::new(layout.width.columns());
    p.raw(cmd::INIT);
    p.raw(cmd::CODE_PAGE_PC437);
    if reprint {
        p.reprint_mark();
    }
    p.center_bold(&layout.branch_name);
    for h in &layout.header {
        p.center(h);
    }
    p.rule();
    match doc {
        Document::Invoice(d) => invoice(&mut p, d, layout, false),
        Document::Receipt(d) => invoice(&mut p, d, layout, true),
        Document::DeliveryNote(d) => delivery_note(&mut p, d, layout),
        Document::PairingQr(d) => pairing(&mut p, d, layout),
        Document::RentalAgreement(d) => rental_agreement(&mut p, d, layout),
        Document::RentalDeliveryNote(d) => rental_delivery_note(&mut p, d, layout),
        Document::ZReport(d) => z_report(&mut p, d, layout),
        Document::RentalInvoice(d) => rental_invoice(&mut p, d, layout),
    }
    if reprint {
        p.reprint_mark();
    }
    p.raw(cmd::FEED_BEFORE_CUT);
    p.raw(cmd::CUT);
    p.out
}

/// An invoice's lines, then subtotal, PPN and the total in bold (workshop and rental alike).
fn billed(
    p: &mut Page,
    lines: &[crate::domain::billing::Line],
    subtotal: i64,
    tax: i64,
    total: i64,
) {
    for l in lines {
        p.wrapped(&l.description);
        p.pair(
            &format!("  {} x {}", l.qty, rupiah(l.unit_price)),
            &rupiah(l.amount),
        );
    }
    p.rule();
    p.pair("Subtotal", &rupiah(subtotal));
    p.pair(
        &format!("PPN {}%", crate::domain::billing::PPN_PERCENT),
        &rupiah(tax),
    );
    p.raw(cmd::BOLD_ON);
    p.pair("TOTAL", &rupiah(total));
    p.raw(cmd::BOLD_OFF);
}

/// The foot of an invoice or receipt.
fn thanks(p: &mut Page) {
    p.rule();
    p.center("Harga sudah termasuk PPN");
    p.center("Terima kasih");
}

fn invoice(p: &mut Page, d: &InvoiceDoc, layout: &Layout, receipt: bool) {
    let inv = &d.invoice;
    p.title(if receipt {
        "KWITANSI / RECEIPT"
    } else {
        "FAKTUR / INVOICE"
    });
    p.field("No", &inv.number);
    p.field("Tanggal", &local_time(&inv.issued_at, layout.utc_offset));
    p.field("Pelanggan", &d.customer_name);
    p.field("No. Polisi", &d.vehicle_plate);
    p.rule();
    billed(p, &inv.lines, inv.subtotal, inv.tax, inv.total);
    if inv.credited != 0 {
        p.pair("Nota kredit", &rupiah(-inv.credited));
    }
    if receipt {
        for pay in &inv.payments {
            p.pair(
                &format!(
                    "Bayar {} {}",
                    pay.method,
                    local_date(&pay.received_at, layout.utc_offset)
                ),
                &rupiah(pay.amount),
            );
        }
    } else if inv.paid != 0 {
        p.pair("Dibayar", &rupiah(inv.paid));
    }
    p.pair("Sisa", &rupiah(inv.balance.max(0)));
    if inv.balance < 0 {
        p.pair("Kembali (refund)", &rupiah(-inv.balance));
    }
    if receipt && inv.balance <= 0 {
        p.rule();
        p.center_bold("LUNAS / PAID");
    }
    thanks(p);
}

fn delivery_note(p: &mut Page, d: &DeliveryNote, layout: &Layout) {
    p.title("SURAT JALAN");
    p.wrapped("No. work order:");
    p.wrapped(&d.work_order_id);
    p.field("Tanggal", &local_time(&d.date, layout.utc_offset));
    p.field("Pelanggan", &d.customer_name);
    p.field("No. Polisi", &d.vehicle_plate);
    p.rule();
    p.pair("Barang", "Jumlah");
    p.rule();
    for l in &d.lines {
        p.pair(
            &format!("{} {}", l.sku, l.name),
            &format!(" {} {}", l.qty, l.unit),
        );
    }
    if d.lines.is_empty() {
        p.wrapped("(tidak ada barang)");
    }
    p.rule();
    let total: i64 = d.lines.iter().map(|l| l.qty).sum();
    p.pair("Jumlah barang", &total.to_string());
    p.feed(2);
    p.pair("Pengirim", "Penerima");
    p.feed(3);
    p.pair("(..........)", "(..........)");
}

/// The parties, the asset and the days: the top of both rental papers.
fn rental_head(p: &mut Page, d: &RentalPaper, layout: &Layout) {
    p.field("No", &d.agreement_number);
    p.field("Booking", &d.booking_id);
    p.field("Tanggal", &local_time(&d.handed_over_at, layout.utc_offset));
    p.field("Penyewa", &d.customer);
    p.field("Kendaraan", &d.asset_name);
    p.field("No. Polisi", &d.plate);
    p.field("Kode aset", &d.asset_id);
    p.field("Mulai", &day(&d.from));
    p.field("Kembali", &day(&d.to));
    p.field("Lama sewa", &format!("{} hari", d.days));
}

/// The handover inspection the papers are tied to: its id, hash, photos and readings.
fn rental_inspection(p: &mut Page, d: &RentalPaper) {
    p.wrapped("Pemeriksaan serah terima:");
    p.wrapped(&d.inspection_id);
    p.wrapped("Hash SHA-256:");
    p.wrapped(&d.inspection_hash);
    p.field("Foto", &d.photo_count.to_string());
    if let Some(km) = d.odometer_km {
        p.field("Odometer", &format!("{} km", grouped(km)));
    }
    if let Some(fuel) = d.fuel_percent {
        p.field("BBM", &format!("{fuel}%"));
    }
}

fn rental_agreement(p: &mut Page, d: &RentalPaper, layout: &Layout) {
    p.title("PERJANJIAN SEWA");
    rental_head(p, d, layout);
    p.rule();
    p.pair("Tarif per hari", &rupiah(d.daily_rate));
    p.pair(
        &format!("Sewa {} hari", d.days),
        &rupiah(d.daily_rate.saturating_mul(d.days)),
    );
    p.pair("Denda telat per hari", &rupiah(d.late_fee_per_day));
    p.pair("Deposit", &rupiah(d.deposit));
    for (method, amount, reference) in &d.deposit_paid {
        p.pair(&format!("Deposit dibayar {method}"), &rupiah(*amount));
        if let Some(r) = reference {
            p.wrapped(&format!("  Ref: {r}"));
        }
    }
    p.rule();
    rental_inspection(p, d);
    p.rule();
    p.wrapped("Ketentuan:");
    for (i, term) in [
        "Kendaraan dikembalikan paling lambat pada tanggal kembali di atas.",
        "Setiap hari keterlambatan dikenakan denda per hari sesuai tarif.",
        "Kerusakan yang ditemukan saat pemeriksaan pengembalian ditanggung penyewa.",
        "Deposit diperhitungkan dengan faktur sewa saat pengembalian; sisanya dikembalikan.",
        "Tarif, denda dan biaya kerusakan belum termasuk PPN 11%.",
    ]
    .iter()
    .enumerate()
    {
        p.wrapped(&format!("{}. {term}", i + 1));
    }
    p.feed(2);
    p.pair("Petugas", "Penyewa");
    p.feed(3);
    p.pair("(..........)", "(..........)");
}

fn rental_delivery_note(p: &mut Page, d: &RentalPaper, layout: &Layout) {
    p.title("SURAT JALAN SEWA");
    rental_head(p, d, layout);
    p.rule();
    rental_inspection(p, d);
    p.rule();
    p.wrapped("Kendaraan diserahkan dalam keadaan sesuai pemeriksaan di atas.");
    p.feed(2);
    p.pair("Pengirim", "Penerima");
    p.feed(3);
    p.pair("(..........)", "(..........)");
}

fn rental_invoice(p: &mut Page, d: &RentalInvoiceDoc, layout: &Layout) {
    let inv = &d.invoice;
    p.title("FAKTUR SEWA / RENTAL INVOICE");
    p.field("No", &inv.number);
    p.field("Tanggal", &local_time(&inv.issued_at, layout.utc_offset));
    p.field("Perjanjian", &d.agreement_number);
    p.field("Penyewa", &d.customer);
    p.field("Kendaraan", &d.asset_name);
    p.field("No. Polisi", &d.plate);
    p.rule();
    billed(p, &inv.lines, inv.subtotal, inv.tax, inv.total);
    for m in &d.payments {
        let label = match m.kind.as_str() {
            "DEPOSIT" => "Deposit",
            "REFUND" => "Deposit kembali",
            _ => "Bayar",
        };
        p.pair(&format!("{label} {}", m.method), &rupiah(m.amount));
    }
    p.pair("Sisa", &rupiah(inv.balance.max(0)));
    if inv.balance <= 0 {
        p.rule();
        p.center_bold("LUNAS / PAID");
    }
    thanks(p);
}

/// Cash counted against expected, and the difference with its reason.
fn drawer(p: &mut Page, expected: i64, counted: i64, difference: i64, reason: Option<&str>) {
    p.pair("Kas seharusnya", &rupiah(expected));
    p.pair("Kas dihitung", &rupiah(counted));
    p.pair("Selisih", &rupiah(difference));
    if let Some(r) = reason {
        p.wrapped(&format!("Alasan: {r}"));
    }
}

fn z_report(p: &mut Page, d: &ZReport, layout: &Layout) {
    p.title("LAPORAN Z / TUTUP HARI");
    p.field("Tanggal", &day(&d.day));
    p.field("Ditutup", &local_time(&d.closed_at, layout.utc_offset));
    p.field("Manajer", &d.manager);
    p.field("Shift", &d.shifts.len().to_string());
    p.rule();
    let (cash, edc, qris) = d.totals;
    p.pair("Tunai (CASH)", &rupiah(cash));
    p.pair("EDC", &rupiah(edc));
    p.pair("QRIS", &rupiah(qris));
    p.pair(
        "Total",
        &rupiah(cash.saturating_add(edc).saturating_add(qris)),
    );
    p.rule();
    for (i, s) in d.shifts.iter().enumerate() {
        p.wrapped(&format!("Shift {}: {}", i + 1, s.cashier));
        p.field("Buka", &local_time(&s.opened_at, layout.utc_offset));
        p.field("Tutup", &local_time(&s.closed_at, layout.utc_offset));
        p.pair("Modal awal", &rupiah(s.opening_float));
        drawer(
            p,
            s.expected_cash,
            s.counted_cash,
            s.difference,
            s.reason.as_deref(),
        );
        p.rule();
    }
    p.wrapped("Hari ini:");
    drawer(
        p,
        d.expected_cash,
        d.counted_cash,
        d.difference,
        d.reason.as_deref(),
    );
    p.feed(2);
    p.pair("Kasir", "Manajer");
    p.feed(3);
    p.pair("(..........)", "(..........)");
}

/// `YYYY-MM-DD` as the branch reads it, `06/12/2026`; anything else as it is.
fn day(raw: &str) -> String {
    match raw.split('-').collect::<Vec<_>>().as_slice() {
        [y, m, d] if y.len() == 4 && m.len() == 2 && d.len() == 2 => format!("{d}/{m}/{y}"),
        _ => raw.to_owned(),
    }
}

fn pairing(p: &mut Page, d: &PairingQr, layout: &Layout) {
    p.title("PAIRING PERANGKAT");
    p.field("Peran", &d.role);
    p.field("Berlaku", &local_time(&d.expires_at, layout.utc_offset));
    p.feed(1);
    p.raw(cmd::ALIGN_CENTER);
    p.qr(&d.payload(), layout.width.qr_module());
    p.raw(cmd::ALIGN_LEFT);
    p.feed(1);
    p.center("Kode / code:");
    p.raw(cmd::SIZE_DOUBLE_HEIGHT);
    p.center_bold(&d.code);
    p.raw(cmd::SIZE_NORMAL);
    p.center("Sekali pakai / one use only");
}

/// Integer rupiah with Indonesian thousands dots: `Rp 1.234.500`, `-Rp 5.000`.
pub fn rupiah(amount: i64) -> String {
    format!(
        "{}Rp {}",
        if amount < 0 { "-" } else { "" },
        grouped(amount)
    )
}

/// The digits of `n` (without its sign) in groups of three with dots: `12.000`.
fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    out
}

/// An RFC 3339 time as the branch reads it: `22/11/2026 10:15 WIB`. A stored time that does not
/// parse is printed as stored rather than failing the document.
pub fn local_time(rfc3339: &str, offset: UtcOffset) -> String {
    match OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339) {
        Ok(t) => {
            let t = t.to_offset(offset);
            format!(
                "{:02}/{:02}/{:04} {:02}:{:02} {}",
                t.day(),
                u8::from(t.month()),
                t.year(),
                t.hour(),
                t.minute(),
                zone_name(offset)
            )
        }
        Err(_) => rfc3339.to_owned(),
    }
}

fn local_date(rfc3339: &str, offset: UtcOffset) -> String {
    match OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339) {
        Ok(t) => {
            let t = t.to_offset(offset);
            format!("{:02}/{:02}", t.day(), u8::from(t.month()))
        }
        Err(_) => rfc3339.to_owned(),
    }
}

fn zone_name(offset: UtcOffset) -> String {
    match offset.whole_seconds() {
        25_200 => "WIB".into(),
        28_800 => "WITA".into(),
        32_400 => "WIT".into(),
        s => format!(
            "UTC{}{:02}:{:02}",
            if s < 0 { '-' } else { '+' },
            s.abs() / 3600,
            s.abs() % 3600 / 60
        ),
    }
}

/// Text as the printer's ASCII: common Latin letters with diacritics lose them, typographic
/// punctuation becomes its ASCII twin, control characters (which would be printer commands) and
/// anything else become `?`.
pub fn to_printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ' '..='~' => out.push(c),
            '\t' => out.push(' '),
            _ => out.push_str(transliterate(c)),
        }
    }
    out
}

fn transliterate(c: char) -> &'static str {
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => "a",
        'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' => "A",
        'è' | 'é' | 'ê' | 'ë' => "e",
        'È' | 'É' | 'Ê' | 'Ë' => "E",
        'ì' | 'í' | 'î' | 'ï' => "i",
        'Ì' | 'Í' | 'Î' | 'Ï' => "I",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => "o",
        'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' => "O",
        'ù' | 'ú' | 'û' | 'ü' => "u",
        'Ù' | 'Ú' | 'Û' | 'Ü' => "U",
        'ñ' => "n",
        'Ñ' => "N",
        'ç' => "c",
        'Ç' => "C",
        'ý' | 'ÿ' => "y",
        'ß' => "ss",
        '‘' | '’' | '`' | '´' => "'",
        '“' | '”' => "\"",
        '–' | '—' => "-",
        '…' => "...",
        '×' => "x",
        '\u{a0}' => " ",
        _ => "?",
    }
}

/// A page being laid out: lines of at most `cols` printable characters.
struct Page {
    cols: usize,
    out: Vec<u8>,
}

impl Page {
    fn new(cols: usize) -> Page {
        Page {
            cols,
            out: Vec::with_capacity(1024),
        }
    }

    fn raw(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    fn line(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.push(b'\n');
    }

    fn feed(&mut self, n: usize) {
        for _ in 0..n {
            self.out.push(b'\n');
        }
    }

    fn rule(&mut self) {
        let r = "-".repeat(self.cols);
        self.line(&r);
    }

    fn reprint_mark(&mut self) {
        self.raw(cmd::ALIGN_CENTER);
        self.raw(cmd::BOLD_ON);
        for l in wrap(REPRINT_MARK, self.cols) {
            self.line(&l);
        }
        self.raw(cmd::BOLD_OFF);
        self.raw(cmd::ALIGN_LEFT);
    }

    fn center(&mut self, text: &str) {
        self.raw(cmd::ALIGN_CENTER);
        for l in wrap(&to_printable(text), self.cols) {
            self.line(&l);
        }
        self.raw(cmd::ALIGN_LEFT);
    }

    fn center_bold(&mut self, text: &str) {
        self.raw(cmd::BOLD_ON);
        self.center(text);
        self.raw(cmd::BOLD_OFF);
    }

    fn title(&mut self, text: &str) {
        self.raw(cmd::SIZE_DOUBLE_HEIGHT);
        self.center_bold(text);
        self.raw(cmd::SIZE_NORMAL);
    }

    fn wrapped(&mut self, text: &str) {
        for l in wrap(&to_printable(text), self.cols) {
            self.line(&l);
        }
    }

    /// `Label     : value`, the value wrapped under itself when long.
    fn field(&mut self, label: &str, value: &str) {
        let label_w = 12.min(self.cols / 3);
        let value_w = self.cols - label_w - 2;
        let label: String = to_printable(label).chars().take(label_w).collect();
        for (i, l) in wrap(&to_printable(value), value_w).into_iter().enumerate() {
            let head = if i == 0 {
                format!("{label:<label_w$}: ")
            } else {
                " ".repeat(label_w + 2)
            };
            self.line(&format!("{head}{l}"));
        }
    }

    /// `left` and `right` on one line, right-aligned; `left` wraps above when both do not fit.
    fn pair(&mut self, left: &str, right: &str) {
        let left = to_printable(left);
        let right = to_printable(right);
        let right: String = right.chars().take(self.cols).collect();
        let room = self.cols - right.len();
        if left.len() < room {
            self.line(&format!("{left:<room$}{right}"));
            return;
        }
        let mut lines = wrap(&left, self.cols);
        let last = lines.pop().unwrap_or_default();
        for l in lines {
            self.line(&l);
        }
        if last.len() < room {
            self.line(&format!("{last:<room$}{right}"));
        } else {
            self.line(&last);
            self.line(&format!("{right:>w$}", w = self.cols));
        }
    }

    /// QR code, model 2, error correction M, via `GS ( k`.
    fn qr(&mut self, data: &str, module: u8) {
        let data = to_printable(data);
        self.raw(b"\x1d(k\x04\x001A2\x00");
        self.raw(&[0x1d, b'(', b'k', 0x03, 0x00, b'1', b'C', module]);
        self.raw(b"\x1d(k\x03\x001E1");
        let len = data.len() + 3;
        let (pl, ph) = ((len % 256) as u8, (len / 256) as u8);
        self.raw(&[0x1d, b'(', b'k', pl, ph, b'1', b'P', b'0']);
        self.raw(data.as_bytes());
        self.raw(b"\x1d(k\x03\x001Q0");
    }
}

/// Greedy word wrap to `cols` (ASCII input); words longer than a line are cut.
fn wrap(text: &str, cols: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let mut word = word;
        while word.len() > cols {
            if !cur.is_empty() {
                lines.push(std::mem::take(&mut cur));
            }
            let (head, tail) = word.split_at(cols);
            lines.push(head.to_owned());
            word = tail;
        }
        if cur.is_empty() {
            cur.push_str(word);
        } else if cur.len() + 1 + word.len() <= cols {
            cur.push(' ');
            cur.push_str(word);
        } else {
            lines.push(std::mem::replace(&mut cur, word.to_owned()));
        }
    }
    if !cur.is_empty() || lines.is_empty() {
        lines.push(cur);
    }
    lines
}

/// A readable rendering of the ESC/POS subset `render` emits: text as printed, commands as
/// `[NAME]`. Used for the `.txt` golden files and for finding documents in captured bytes.
pub fn describe(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let (name, len): (String, usize) = match rest {
            [0x1b, b'@', ..] => ("[INIT]".into(), 2),
            [0x1b, b't', n, ..] => (format!("[CODEPAGE {n}]"), 3),
            [0x1b, b'a', n, ..] => (
                match n {
                    0 => "[LEFT]".into(),
                    1 => "[CENTER]".into(),
                    _ => format!("[ALIGN {n}]"),
                },
                3,
            ),
            [0x1b, b'E', n, ..] => (if *n == 0 { "[/BOLD]" } else { "[BOLD]" }.into(), 3),
            [0x1d, b'!', n, ..] => (format!("[SIZE {n:#04x}]"), 3),
            [0x1b, b'd', n, ..] => (format!("[FEED {n}]"), 3),
            [0x1d, b'V', b'B', _, ..] => ("[CUT]".into(), 4),
            [0x1d, b'(', b'k', pl, ph, b'1', b'P', b'0', ..] => {
                let n = (usize::from(*pl) + usize::from(*ph) * 256).saturating_sub(3);
                let data = rest.get(8..8 + n).unwrap_or(&[]);
                (
                    format!("[QR {}]", String::from_utf8_lossy(data)),
                    8 + data.len(),
                )
            }
            [0x1d, b'(', b'k', pl, ph, ..] => {
                let n = usize::from(*pl) + usize::from(*ph) * 256;
                (String::new(), 5 + n)
            }
            [0x10, 0x04, n, ..] => (format!("[DLE EOT {n}]"), 3),
            [b'\n', ..] => ("\n".into(), 1),
            [b, ..] if (b' '..=b'~').contains(b) => ((*b as char).to_string(), 1),
            [b, ..] => (format!("[{b:#04x}]"), 1),
            [] => unreachable!("loop condition"),
        };
        out.push_str(&name);
        i += len.min(rest.len()).max(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rupiah_groups_thousands_with_dots() {
        for (n, s) in [
            (0, "Rp 0"),
            (999, "Rp 999"),
            (1_000, "Rp 1.000"),
            (166_500, "Rp 166.500"),
            (1_234_567, "Rp 1.234.567"),
            (-5_000, "-Rp 5.000"),
        ] {
            assert_eq!(rupiah(n), s);
        }
    }

    #[test]
    fn text_becomes_printable_ascii() {
        for (input, want) in [
            ("Budi Santoso", "Budi Santoso"),
            ("José Ñoño", "Jose Nono"),
            ("Rem “depan” – kiri", "Rem \"depan\" - kiri"),
            ("a\x1b@b", "a?@b"),
            ("日本", "??"),
        ] {
            assert_eq!(to_printable(input), want);
        }
    }

    #[test]
    fn wrap_fits_columns() {
        for (text, cols, want) in [
            ("", 10, vec![""]),
            ("satu dua tiga", 8, vec!["satu dua", "tiga"]),
            ("abcdefghijkl", 5, vec!["abcde", "fghij", "kl"]),
            ("ab  cd", 10, vec!["ab cd"]),
        ] {
            assert_eq!(wrap(text, cols), want, "{text:?} in {cols}");
        }
    }

    #[test]
    fn local_time_names_the_zone() {
        let off = |h| UtcOffset::from_hms(h, 0, 0).expect("valid");
        assert_eq!(
            local_time("2026-11-22T03:15:00.000Z", off(7)),
            "22/11/2026 10:15 WIB"
        );
        assert_eq!(
            local_time("2026-11-22T20:15:00Z", off(8)),
            "23/11/2026 04:15 WITA"
        );
        assert_eq!(local_time("not a time", off(9)), "not a time");
    }

    #[test]
    fn the_pairing_qr_holds_the_pairing_uri() {
        let uri = format!(
            "sentra://pair?url=https://192.168.1.20:8443&code=ABCD-EFGH&fp=sha256:{}",
            "ab".repeat(32)
        );
        let doc = Document::PairingQr(PairingQr {
            branch_id: "JKT01".into(),
            code: "ABCD-EFGH".into(),
            role: "tablet".into(),
            expires_at: "2026-11-22T03:15:00Z".into(),
            uri: Some(uri.clone()),
        });
        let layout = Layout {
            width: PaperWidth::Mm58,
            branch_name: "Bengkel".into(),
            header: vec![],
            utc_offset: UtcOffset::from_hms(7, 0, 0).expect("valid"),
        };
        let text = describe(&render(&doc, &layout, false));
        assert!(text.contains(&format!("[QR {uri}]")), "{text}");
    }

    #[test]
    fn every_line_fits_the_paper() {
        let doc = Document::PairingQr(PairingQr {
            branch_id: "JKT01".into(),
            code: "ABCD-EFGH".into(),
            role: "tablet".into(),
            expires_at: "2026-11-22T03:15:00Z".into(),
            uri: None,
        });
        for width in [PaperWidth::Mm58, PaperWidth::Mm80] {
            let layout = Layout {
                width,
                branch_name: "Bengkel Sentra Jaya Abadi Motor Cabang Kelapa Gading".into(),
                header: vec!["Jl. Boulevard Raya Blok QJ No. 5, Jakarta Utara".into()],
                utc_offset: UtcOffset::from_hms(7, 0, 0).expect("valid"),
            };
            let text = describe(&render(&doc, &layout, true));
            for line in text.lines() {
                let printed: String = strip_commands(line);
                assert!(
                    printed.len() <= width.columns(),
                    "{printed:?} is wider than {} columns",
                    width.columns()
                );
            }
            assert_eq!(text.matches(REPRINT_MARK).count(), 2);
            assert!(text.contains("[QR SENTRA-PAIR:JKT01:ABCD-EFGH]"));
        }
    }

    fn strip_commands(line: &str) -> String {
        let mut out = String::new();
        let mut depth = 0;
        for c in line.chars() {
            match c {
                '[' => depth += 1,
                ']' if depth > 0 => depth -= 1,
                c if depth == 0 => out.push(c),
                _ => {}
            }
        }
        out
    }

    #[test]
    fn describe_reads_back_commands() {
        let bytes = b"\x1b@\x1bt\x00\x1ba\x01\x1bE\x01Hi\n\x1bE\x00\x10\x04\x04\x1dVB\x00";
        assert_eq!(
            describe(bytes),
            "[INIT][CODEPAGE 0][CENTER][BOLD]Hi\n[/BOLD][DLE EOT 4][CUT]"
        );
    }
}
